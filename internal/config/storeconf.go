package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Store backends.
const (
	BackendEmbedded = "embedded" // an etcd member inside every agent (the default)
	BackendEtcd     = "etcd"     // an external etcd cluster
	BackendPostgres = "postgres" // a shared PostgreSQL database
	BackendMySQL    = "mysql"    // a shared MySQL or MariaDB database
)

// Store defaults.
const (
	defaultTablePrefix        = "haven_"
	defaultMySQLPollInterval  = 100 * time.Millisecond
	defaultPostgresPollPeriod = 500 * time.Millisecond // a fallback: LISTEN/NOTIFY does the work
)

var (
	storeKeys    = []string{"backend", "endpoints", "dsn", "dsn_file", "tls", "username", "password_file", "poll_interval", "table_prefix"}
	storeTLSKeys = []string{"ca_file", "cert_file", "key_file"}
	tablePrefix  = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,29}$`)
	dsnPassword  = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)
)

// Store configures the coordination store (`store:`). The zero value (and
// Backend "embedded") is the embedded etcd that every agent runs; the other
// fields belong to the external backends and are empty for it.
type Store struct {
	Backend string // embedded, etcd, postgres or mysql

	// etcd
	Endpoints    []string // host:port or URLs of the external etcd cluster (may use ${VAR} from the node's env)
	TLS          StoreTLS
	Username     string // etcd authentication; the password comes from PasswordFile
	PasswordFile string

	// postgres and mysql
	DSN          string        // connection string as written (may use ${VAR} from the node's env)
	DSNFile      string        // or a file holding it, so that the secret stays out of this file
	PollInterval time.Duration // how often to re-read the store (mysql: the watch; postgres: a fallback to LISTEN/NOTIFY)
	TablePrefix  string        // tables are <prefix>sessions, <prefix>leader, ...
	DSNLine      int           // line of dsn or dsn_file, for messages

	Line int // line of `store:` in the file, for messages
}

// StoreTLS holds the files for TLS to an external etcd cluster.
type StoreTLS struct {
	CAFile   string
	CertFile string
	KeyFile  string
}

// Shared reports whether the backend is a database shared by all agents
// (postgres or mysql), which then arbitrates between them.
func (s Store) Shared() bool { return s.Backend == BackendPostgres || s.Backend == BackendMySQL }

// External reports whether agents use a store outside themselves, so they
// run no etcd member and need no peer or client address.
func (s Store) External() bool { return s.Backend != "" && s.Backend != BackendEmbedded }

// ConnString returns the connection string for node vars: dsn, or the
// trimmed content of dsn_file, with ${NAME} replaced from vars (a node's
// Vars), so that nodes may reach the database by different routes.
func (s Store) ConnString(vars map[string]string) (string, error) {
	dsn := s.DSN
	if s.DSNFile != "" {
		b, err := os.ReadFile(s.DSNFile)
		if err != nil {
			return "", fmt.Errorf("store.dsn_file: %w (it must hold the connection string)", err)
		}
		dsn = strings.TrimSpace(string(b))
		if dsn == "" {
			return "", fmt.Errorf("store.dsn_file %s is empty; write the connection string in it", s.DSNFile)
		}
	}
	return Expand(dsn, vars), nil
}

// Password reads the etcd password from password_file ("" without one).
func (s Store) Password() (string, error) {
	if s.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("store.password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Describe is the store line of `haven config check`; it never shows a secret.
func (s Store) Describe() string {
	switch s.Backend {
	case BackendEtcd:
		tls := "plain http"
		if s.TLS.CAFile != "" || s.TLS.CertFile != "" {
			tls = "TLS"
		}
		auth := ""
		if s.Username != "" {
			auth = ", user " + s.Username
		}
		return fmt.Sprintf("external etcd at %s (%s%s); its own members vote, so agents need no quorum of their own", strings.Join(s.Endpoints, ", "), tls, auth)
	case BackendPostgres, BackendMySQL:
		src := "dsn " + RedactDSN(s.DSN)
		if s.DSNFile != "" {
			src = "dsn_file " + s.DSNFile
		}
		return fmt.Sprintf("%s, shared database (%s), tables %s*, re-read every %s; the database is the arbiter, so any number of nodes, two included, is safe without a witness",
			s.Backend, src, s.TablePrefix, s.PollInterval)
	}
	return "embedded etcd: every node runs a member and the nodes vote"
}

// RedactDSN hides the password in a connection string (URL or key=value, or
// MySQL's user:password@tcp(...)).
func RedactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return strings.Replace(u.String(), "xxxxx", "***", 1)
		}
		return dsn
	}
	if i := strings.Index(dsn, "@"); i > 0 && !strings.Contains(dsn[:i], " ") {
		if j := strings.Index(dsn[:i], ":"); j >= 0 {
			return dsn[:j] + ":***" + dsn[i:]
		}
		return dsn
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}***")
}

func (b *builder) store(f fields) {
	s := &b.c.Store
	s.Backend = BackendEmbedded
	n, ok := f["store"]
	if !ok {
		return
	}
	s.Line = b.lineFor("store")
	sf := b.mapping(n, "store", storeKeys)
	if sf == nil {
		return
	}
	if v, ok := sf["backend"]; ok {
		if x, ok := b.oneOf(v, "store.backend", BackendEmbedded, BackendEtcd, BackendPostgres, BackendMySQL); ok {
			s.Backend = x
		} else {
			return
		}
	}
	// which fields belong to which backend
	belongs := map[string][]string{
		"endpoints": {BackendEtcd}, "tls": {BackendEtcd, BackendMySQL}, "username": {BackendEtcd}, "password_file": {BackendEtcd},
		"dsn": {BackendPostgres, BackendMySQL}, "dsn_file": {BackendPostgres, BackendMySQL},
		"poll_interval": {BackendPostgres, BackendMySQL}, "table_prefix": {BackendPostgres, BackendMySQL},
	}
	for _, key := range storeKeys[1:] {
		if _, given := sf[key]; given && !slices.Contains(belongs[key], s.Backend) {
			b.add(b.lineFor("store."+key), "store."+key, "does not apply to backend %s; it is for %s (remove it, or set store.backend)", s.Backend, strings.Join(belongs[key], " and "))
		}
	}
	switch s.Backend {
	case BackendEtcd:
		b.storeEtcd(sf)
	case BackendPostgres, BackendMySQL:
		b.storeSQL(sf)
	}
}

func (b *builder) storeEtcd(sf fields) {
	s := &b.c.Store
	v := b.required(sf, "store", "endpoints", "list the etcd cluster's client addresses, e.g. endpoints: [10.0.0.5:2379, 10.0.0.6:2379]")
	if v != nil {
		if eps, ok := b.strList(v, "store.endpoints"); ok {
			if len(eps) == 0 {
				b.add(v.Line, "store.endpoints", "is empty; list at least one etcd client address, e.g. [10.0.0.5:2379]")
			}
			for i, e := range eps {
				// An endpoint built from ${VARS} (a node's env) is checked once expanded.
				if err := checkEndpoint(e); err != nil && !strings.Contains(e, "$") {
					b.add(v.Line, indexField("store.endpoints", i), "invalid endpoint %q: %v; write host:port or http(s)://host:port", e, err)
				}
			}
			s.Endpoints = eps
		}
	}
	if v, ok := sf["tls"]; ok {
		tf := b.mapping(v, "store.tls", storeTLSKeys)
		file := func(key string) string {
			if v, ok := tf[key]; ok {
				if p, ok := b.str(v, "store.tls."+key); ok && p != "" {
					return b.resolve(p)
				}
			}
			return ""
		}
		s.TLS = StoreTLS{CAFile: file("ca_file"), CertFile: file("cert_file"), KeyFile: file("key_file")}
		if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
			b.add(b.lineFor("store.tls"), "store.tls", "cert_file and key_file go together (a client certificate needs its key); give both or neither")
		}
	}
	if v, ok := sf["username"]; ok {
		s.Username, _ = b.str(v, "store.username")
	}
	if v, ok := sf["password_file"]; ok {
		if p, ok := b.str(v, "store.password_file"); ok && p != "" {
			s.PasswordFile = b.resolve(p)
		}
	}
	if (s.Username == "") != (s.PasswordFile == "") {
		b.add(b.lineFor("store"), "store.username", "username and password_file go together for etcd authentication; give both or neither")
	}
}

func checkEndpoint(e string) error {
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return err
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("scheme %q is not http or https", u.Scheme)
		}
		e = u.Host
	}
	_, err := normaliseAddr(e)
	return err
}

func (b *builder) storeSQL(sf fields) {
	s := &b.c.Store
	s.TablePrefix = defaultTablePrefix
	s.PollInterval = defaultMySQLPollInterval
	if s.Backend == BackendPostgres {
		s.PollInterval = defaultPostgresPollPeriod
	}
	dsn, hasDSN := sf["dsn"]
	file, hasFile := sf["dsn_file"]
	switch {
	case hasDSN && hasFile:
		b.add(file.Line, "store.dsn_file", "both dsn and dsn_file are set; keep one (dsn_file keeps the password out of this file)")
	case !hasDSN && !hasFile:
		example := "postgres://haven@db.example:5432/haven"
		if s.Backend == BackendMySQL {
			example = "haven@tcp(db.example:3306)/haven"
		}
		b.add(b.lineFor("store"), "store.dsn", "missing; give the database's connection string in dsn (e.g. %s) or a file holding it in dsn_file", example)
	case hasDSN:
		s.DSNLine = dsn.Line
		if x, ok := b.str(dsn, "store.dsn"); ok {
			if strings.TrimSpace(x) == "" {
				b.add(dsn.Line, "store.dsn", "is empty; give the database's connection string")
			}
			s.DSN = x
		}
	default:
		s.DSNLine = file.Line
		if p, ok := b.str(file, "store.dsn_file"); ok && p != "" {
			s.DSNFile = b.resolve(p)
		}
	}
	if v, ok := sf["poll_interval"]; ok {
		if d, ok := b.duration(v, "store.poll_interval"); ok {
			if d < 10*time.Millisecond {
				b.add(v.Line, "store.poll_interval", "%s is below 10ms and would keep the database busy; use at least 10ms", d)
			} else {
				s.PollInterval = d
			}
		}
	}
	if v, ok := sf["table_prefix"]; ok {
		if x, ok := b.str(v, "store.table_prefix"); ok {
			if tablePrefix.MatchString(x) {
				s.TablePrefix = x
			} else {
				b.add(v.Line, "store.table_prefix", "invalid prefix %q; use up to 30 lowercase letters, digits or '_', not starting with a digit", x)
			}
		}
	}
}
