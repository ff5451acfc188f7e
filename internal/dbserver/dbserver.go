// Package dbserver starts throwaway database and etcd servers on loopback —
// PostgreSQL, MariaDB and etcd from Debian's packages — in temporary
// directories, for `haven drill --sandbox --store ...` and for the store
// tests (internal/store/storetest wraps it). It only runs the binaries
// installed on this machine; it downloads nothing.
package dbserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haven-ha/haven/internal/ports"
	"github.com/haven-ha/haven/internal/procstart"
)

// InstallHint is what an error says when a server binary is missing.
const InstallHint = "install Debian's postgresql, mariadb-server and etcd-server (apt-get install postgresql mariadb-server etcd-server), or run ./scripts/test, which does"

// ErrMissing marks the errors of a server binary that is not installed.
var ErrMissing = errors.New("server binary not found")

// Server is a throwaway database or etcd server on loopback, in a
// temporary directory that Close removes.
type Server struct {
	Kind string // "postgres", "mariadb" or "etcd"
	Addr string // 127.0.0.1:port for clients
	DSN  string // connection string for haven (postgres, mariadb); endpoint for etcd
	Dir  string // data directory and logs

	argv    []string
	cred    *syscall.Credential
	stopSig syscall.Signal
	ready   func(ctx context.Context) error
	logPath string
	client  string // psql or the mariadb client

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts the server and waits until it accepts clients (at most 60s).
func (s *Server) Start() error {
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: s.cred}
	// Pdeathsig comes when the thread that forked the server ends, and the
	// Go runtime ends the thread of any goroutine that returns locked to
	// it (in-process agents' supervisors do): fork from a locked thread
	// that lives as long as the server (procstart).
	done := make(chan struct{})
	if err := procstart.Start(cmd, func(error) { log.Close(); close(done) }); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", s.Kind, err)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		err := s.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited while starting; its log:\n%s", s.Kind, s.Log())
		case <-ctx.Done():
			s.Stop()
			return fmt.Errorf("%s not ready within 60s (%v); its log:\n%s", s.Kind, err, s.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop shuts the server down cleanly (SIGKILL after 30s) and waits.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(s.stopSig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Running reports whether the server process runs.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Restart stops and starts the server; it returns how long clients could
// not reach it.
func (s *Server) Restart() (time.Duration, error) {
	start := time.Now()
	s.Stop()
	err := s.Start()
	return time.Since(start), err
}

// Close stops the server and removes its directory.
func (s *Server) Close() {
	s.Stop()
	_ = os.RemoveAll(s.Dir)
}

// Log returns the end of the server's log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// FreePort returns a free loopback port (package ports: claimed for this
// process, outside the kernel's ephemeral range).
func FreePort() (int, error) {
	p, err := ports.Free(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// tempDir makes a short directory under /tmp (unix socket paths are short)
// owned by cred's user when given.
func tempDir(prefix string, cred *syscall.Credential) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

func run(cred *syscall.Credential, dir string, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out.String())
	}
	return nil
}

// userCred returns the credentials to run a server as: name's when running
// as root (PostgreSQL refuses to run as root), nil otherwise.
func userCred(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w: user %s not found (%v), which the postgresql package creates; %s", ErrMissing, name, err, InstallHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// PostgresBin finds the newest /usr/lib/postgresql/*/bin with a server.
func PostgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: PostgreSQL server (/usr/lib/postgresql/*/bin/postgres): %s", ErrMissing, InstallHint)
}

// StartPostgres starts a throwaway PostgreSQL server on a free loopback port
// (as user postgres when running as root) and returns it; its DSN connects
// as the superuser "haven" to database "postgres" without password.
func StartPostgres() (*Server, error) { return startPostgres("", "") }

// StartPostgresTLS is StartPostgres with TLS on (ssl=on) with the PEM
// certificate and key given; its DSN still says sslmode=disable, for the
// test to replace.
func StartPostgresTLS(certFile, keyFile string) (*Server, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("StartPostgresTLS needs a certificate and a key")
	}
	return startPostgres(certFile, keyFile)
}

func startPostgres(certFile, keyFile string) (*Server, error) {
	bin, err := PostgresBin()
	if err != nil {
		return nil, err
	}
	cred, err := userCred("postgres")
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("haven-pg-", cred)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := run(cred, dir, filepath.Join(bin, "initdb"), "-D", data, "-U", "haven", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		Kind: "postgres", Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, cred: cred,
		stopSig: syscall.SIGINT, // fast shutdown
		logPath: filepath.Join(dir, "postgres.log"),
		client:  filepath.Join(bin, "psql"),
		argv: []string{filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir,
			"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
			"-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=200",
			"-c", "shared_preload_libraries=pg_stat_statements"},
	}
	if certFile != "" {
		// PostgreSQL wants the key owned by its user and private: copy both.
		for _, f := range [][2]string{{certFile, "server.crt"}, {keyFile, "server.key"}} {
			data, err := os.ReadFile(f[0])
			if err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
			dst := filepath.Join(dir, f[1])
			if err := os.WriteFile(dst, data, 0o600); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
			if cred != nil {
				if err := os.Chown(dst, int(cred.Uid), int(cred.Gid)); err != nil {
					os.RemoveAll(dir)
					return nil, err
				}
			}
		}
		s.argv = append(s.argv, "-c", "ssl=on", "-c", "ssl_cert_file="+filepath.Join(dir, "server.crt"), "-c", "ssl_key_file="+filepath.Join(dir, "server.key"))
	}
	s.DSN = fmt.Sprintf("postgres://haven@%s/postgres?sslmode=disable", s.Addr)
	s.ready = readyWhen(filepath.Join(bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "haven", "-d", "postgres")
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Psql runs one SQL command on the PostgreSQL server and returns its output.
func (s *Server) Psql(sql string) (string, error) {
	out, err := exec.Command(s.client, "-X", "-A", "-t", "-q", "-d", s.DSN, "-c", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// StartMariaDB starts a throwaway MariaDB server on a free loopback port and
// returns it; its DSN connects as user haven (password haven) to database
// haven, in go-sql-driver/mysql form.
func StartMariaDB() (*Server, error) { return startMariaDB("", "") }

// StartMariaDBTLS is StartMariaDB with TLS on, with the PEM certificate
// and key given (the DSN does not ask for TLS; the test adds it).
func StartMariaDBTLS(certFile, keyFile string) (*Server, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("StartMariaDBTLS needs a certificate and a key")
	}
	return startMariaDB(certFile, keyFile)
}

func startMariaDB(certFile, keyFile string) (*Server, error) {
	mariadbd, err := exec.LookPath("mariadbd")
	if err != nil {
		if mariadbd, err = exec.LookPath("/usr/sbin/mariadbd"); err != nil {
			return nil, fmt.Errorf("%w: MariaDB server (mariadbd): %s", ErrMissing, InstallHint)
		}
	}
	install, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		return nil, fmt.Errorf("%w: mariadb-install-db: %s", ErrMissing, InstallHint)
	}
	client, err := mariadbClient()
	if err != nil {
		return nil, err
	}
	asUser := "--user=" + currentUser()
	dir, err := tempDir("haven-my-", nil)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	// Its own temporary directory: servers bootstrapped at once shared
	// /tmp's temporary tables, and one removed another's ("Error on delete
	// of '/tmp/#sql-temptable-...'", which failed a CI run).
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := run(nil, dir, install, "--no-defaults", "--datadir="+data, "--tmpdir="+tmp, "--auth-root-authentication-method=normal", asUser, "--skip-test-db", "--skip-name-resolve"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sock := filepath.Join(dir, "sock")
	s := &Server{
		Kind: "mariadb", Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir,
		stopSig: syscall.SIGTERM,
		logPath: filepath.Join(dir, "mariadb.log"),
		client:  client,
		argv: []string{mariadbd, "--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--port=" + strconv.Itoa(port),
			"--bind-address=127.0.0.1", "--socket=" + sock, "--pid-file=" + filepath.Join(dir, "pid"), asUser,
			"--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
			"--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--max-connections=300",
			"--innodb-buffer-pool-dump-at-shutdown=0", "--innodb-buffer-pool-load-at-startup=0",
			"--log-error=" + filepath.Join(dir, "mariadb.log")},
	}
	if certFile != "" {
		s.argv = append(s.argv, "--ssl-cert="+certFile, "--ssl-key="+keyFile)
	}
	s.DSN = fmt.Sprintf("haven:haven@tcp(%s)/haven", s.Addr)
	s.ready = readyWhen(client, "--no-defaults", "-uroot", "--socket="+sock, "-e", "SELECT 1")
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if out, err := s.SQL("CREATE DATABASE IF NOT EXISTS haven; CREATE USER IF NOT EXISTS 'haven'@'%' IDENTIFIED BY 'haven'; GRANT ALL ON *.* TO 'haven'@'%'; FLUSH PRIVILEGES;"); err != nil {
		s.Close()
		return nil, fmt.Errorf("create the haven database and user: %v: %s", err, out)
	}
	return s, nil
}

func mariadbClient() (string, error) {
	for _, c := range []string{"mariadb", "mysql"} {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: the mariadb client: %s", ErrMissing, InstallHint)
}

// SQL runs statements on the MariaDB server as root (over its socket).
func (s *Server) SQL(sql string) (string, error) {
	out, err := exec.Command(s.client, "--no-defaults", "-uroot", "--socket="+filepath.Join(s.Dir, "sock"), "-N", "-B", "-e", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// StartEtcd starts a throwaway single-member etcd server (Debian's
// etcd-server, /usr/bin/etcd) on free loopback ports; DSN is its client
// endpoint host:port.
func StartEtcd() (*Server, error) { return startEtcd("", "", "") }

// StartEtcdTLS is StartEtcd with its client listener in mutual TLS: it
// presents certFile and takes only clients with a certificate caFile
// signed (the same certificate serves for its readiness probe).
func StartEtcdTLS(caFile, certFile, keyFile string) (*Server, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, errors.New("StartEtcdTLS needs a CA, a certificate and a key")
	}
	return startEtcd(caFile, certFile, keyFile)
}

func startEtcd(caFile, certFile, keyFile string) (*Server, error) {
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("%w: etcd server (etcd): %s", ErrMissing, InstallHint)
	}
	dir, err := tempDir("haven-etcd-", nil)
	if err != nil {
		return nil, err
	}
	cport, err := FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	pport, err := FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	scheme := "http"
	hc := http.DefaultClient
	if caFile != "" {
		scheme = "https"
		pem, err := os.ReadFile(caFile)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	}
	client := fmt.Sprintf("%s://127.0.0.1:%d", scheme, cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	s := &Server{
		Kind: "etcd", Addr: fmt.Sprintf("127.0.0.1:%d", cport), Dir: dir,
		stopSig: syscall.SIGTERM,
		logPath: filepath.Join(dir, "etcd.log"),
		argv: []string{etcd, "--name", "s1", "--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "s1=" + peer, "--heartbeat-interval", "50", "--election-timeout", "500",
			"--log-level", "warn"},
	}
	if caFile != "" {
		s.argv = append(s.argv, "--cert-file", certFile, "--key-file", keyFile, "--trusted-ca-file", caFile, "--client-cert-auth")
	}
	s.DSN = s.Addr
	s.ready = func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, client+"/health", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if !strings.Contains(b.String(), `"true"`) {
			return fmt.Errorf("etcd /health: %s", b.String())
		}
		return nil
	}
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// readyWhen is a readiness probe: the server is ready when the command
// succeeds.
func readyWhen(name string, args ...string) func(context.Context) error {
	return func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v %s", filepath.Base(name), err, out)
		}
		return nil
	}
}
