package storetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
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
	"testing"
	"time"
)

// installHint is what a test says when a server binary is missing: the
// suite never skips, since CI must run against every backend.
const installHint = "run ./scripts/test, which installs Debian's postgresql, mariadb-server and etcd-server when they are missing (or apt-get install them)"

// Server is a throwaway database or etcd server on loopback, started by a
// test in a temporary directory and stopped when the test ends.
type Server struct {
	Kind string // "postgres", "mariadb" or "etcd"
	Addr string // 127.0.0.1:port for clients
	DSN  string // connection string for haven (postgres, mariadb); endpoint for etcd
	Dir  string // data directory and logs

	t       testing.TB
	argv    []string
	cred    *syscall.Credential
	stopSig syscall.Signal
	ready   func(ctx context.Context) error
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts the server and waits until it accepts clients.
func (s *Server) Start() {
	s.t.Helper()
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: s.cred}
	if err := cmd.Start(); err != nil {
		log.Close()
		s.t.Fatalf("start %s: %v", s.Kind, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		err := s.ready(ctx)
		if err == nil {
			return
		}
		select {
		case <-done:
			s.t.Fatalf("%s exited while starting; its log:\n%s", s.Kind, s.Log())
		case <-ctx.Done():
			s.t.Fatalf("%s not ready within 60s (%v); its log:\n%s", s.Kind, err, s.Log())
		case <-time.After(50 * time.Millisecond):
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

// Restart stops and starts the server; it returns how long clients could
// not reach it.
func (s *Server) Restart() time.Duration {
	s.t.Helper()
	start := time.Now()
	s.Stop()
	s.Start()
	return time.Since(start)
}

// Log returns the end of the server's log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func (s *Server) cleanup() {
	s.Stop()
	if s.t.Failed() {
		s.t.Logf("---- log of %s ----\n%s", s.Kind, s.Log())
	}
	_ = os.RemoveAll(s.Dir)
}

// FreePort returns a free loopback port.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tempDir makes a short directory under /tmp (unix socket paths are short)
// owned by cred's user when given.
func tempDir(t testing.TB, prefix string, cred *syscall.Credential) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func run(t testing.TB, cred *syscall.Credential, dir string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out.String())
	}
}

// userCred returns the credentials to run a server as: name's when running
// as root (PostgreSQL refuses to run as root), nil otherwise.
func userCred(t testing.TB, name string) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s not found (%v); the postgresql package creates it: %s", name, err, installHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// postgresBin finds the newest /usr/lib/postgresql/*/bin.
func postgresBin(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d
		}
	}
	t.Fatalf("PostgreSQL server not found (/usr/lib/postgresql/*/bin/postgres): %s", installHint)
	return ""
}

// StartPostgres starts a throwaway PostgreSQL server on a free loopback port
// (as user postgres when the test runs as root) and returns it; its DSN
// connects as the superuser "haven" to database "postgres" without password.
func StartPostgres(t testing.TB) *Server {
	t.Helper()
	bin := postgresBin(t)
	cred := userCred(t, "postgres")
	dir := tempDir(t, "haven-pg-", cred)
	data := filepath.Join(dir, "data")
	run(t, cred, dir, filepath.Join(bin, "initdb"), "-D", data, "-U", "haven", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	port := FreePort(t)
	s := &Server{
		Kind: "postgres", Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, t: t, cred: cred,
		stopSig: syscall.SIGINT, // fast shutdown
		logPath: filepath.Join(dir, "postgres.log"),
		argv: []string{filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir,
			"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
			"-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=200",
			"-c", "shared_preload_libraries=pg_stat_statements"},
	}
	s.DSN = fmt.Sprintf("postgres://haven@%s/postgres?sslmode=disable", s.Addr)
	s.ready = func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "haven", "-d", "postgres").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_isready: %v %s", err, out)
		}
		return nil
	}
	t.Cleanup(s.cleanup)
	s.Start()
	return s
}

// Psql runs one SQL command on the server and returns its output.
func (s *Server) Psql(sql string) (string, error) {
	bin := filepath.Dir(s.argv[0])
	out, err := exec.Command(filepath.Join(bin, "psql"), "-X", "-A", "-t", "-q", "-d", s.DSN, "-c", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// StartMariaDB starts a throwaway MariaDB server on a free loopback port and
// returns it; its DSN connects as user haven (password haven) to database
// haven, in go-sql-driver/mysql form.
func StartMariaDB(t testing.TB) *Server {
	t.Helper()
	mariadbd, err := exec.LookPath("mariadbd")
	if err != nil {
		if mariadbd, err = exec.LookPath("/usr/sbin/mariadbd"); err != nil {
			t.Fatalf("MariaDB server not found (mariadbd): %s", installHint)
		}
	}
	install, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		t.Fatalf("mariadb-install-db not found: %s", installHint)
	}
	var cred *syscall.Credential
	asUser := "--user=" + currentUser()
	dir := tempDir(t, "haven-my-", cred)
	data := filepath.Join(dir, "data")
	run(t, cred, dir, install, "--no-defaults", "--datadir="+data, "--auth-root-authentication-method=normal", asUser, "--skip-test-db", "--skip-name-resolve")
	port := FreePort(t)
	sock := filepath.Join(dir, "sock")
	s := &Server{
		Kind: "mariadb", Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, t: t,
		stopSig: syscall.SIGTERM,
		logPath: filepath.Join(dir, "mariadb.log"),
		argv: []string{mariadbd, "--no-defaults", "--datadir=" + data, "--port=" + strconv.Itoa(port),
			"--bind-address=127.0.0.1", "--socket=" + sock, "--pid-file=" + filepath.Join(dir, "pid"), asUser,
			"--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
			"--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--max-connections=300",
			"--log-error=" + filepath.Join(dir, "mariadb.log")},
	}
	s.DSN = fmt.Sprintf("haven:haven@tcp(%s)/haven", s.Addr)
	client := mariadbClient(t)
	s.ready = func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, client, "--no-defaults", "-uroot", "--socket="+sock, "-e", "SELECT 1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	}
	t.Cleanup(s.cleanup)
	s.Start()
	if _, err := s.SQL("CREATE DATABASE IF NOT EXISTS haven; CREATE USER IF NOT EXISTS 'haven'@'%' IDENTIFIED BY 'haven'; GRANT ALL ON *.* TO 'haven'@'%'; FLUSH PRIVILEGES;"); err != nil {
		t.Fatalf("create the haven database and user: %v", err)
	}
	return s
}

func mariadbClient(t testing.TB) string {
	for _, c := range []string{"mariadb", "mysql"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatalf("the mariadb client not found: %s", installHint)
	return ""
}

// SQL runs statements on the MariaDB server as root (over its socket).
func (s *Server) SQL(sql string) (string, error) {
	out, err := exec.Command(mariadbClient(s.t), "--no-defaults", "-uroot", "--socket="+filepath.Join(s.Dir, "sock"), "-N", "-B", "-e", sql).CombinedOutput()
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
func StartEtcd(t testing.TB) *Server {
	t.Helper()
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd server not found (etcd): %s", installHint)
	}
	dir := tempDir(t, "haven-etcd-", nil)
	cport, pport := FreePort(t), FreePort(t)
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	s := &Server{
		Kind: "etcd", Addr: fmt.Sprintf("127.0.0.1:%d", cport), Dir: dir, t: t,
		stopSig: syscall.SIGTERM,
		logPath: filepath.Join(dir, "etcd.log"),
		argv: []string{etcd, "--name", "s1", "--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "s1=" + peer, "--heartbeat-interval", "50", "--election-timeout", "500",
			"--log-level", "warn"},
	}
	s.DSN = s.Addr
	s.ready = func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, client+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
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
	t.Cleanup(s.cleanup)
	s.Start()
	return s
}
