// Package mysql is ha.Store on a MySQL or MariaDB database: sqlstore's
// algorithm (and its safety argument) over the MySQL dialect, with
// go-sql-driver/mysql as the driver. MySQL has no LISTEN/NOTIFY, so Watch
// re-reads every poll interval, and also when the earliest live session or
// the switchover is due to expire. Epochs and the revisions of fenced
// writes are rows of a counters table, incremented inside the
// transactions that draw them.
package mysql

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/haven-ha/haven/internal/store/sqlstore"
)

// Options configure a Store.
type Options struct {
	Cluster      string        // cluster name: rows of other clusters are never touched
	Node         string        // this agent's node name, recorded with its sessions
	DSN          string        // go-sql-driver form: user:password@tcp(host:port)/dbname?params
	TablePrefix  string        // default "haven_"
	PollInterval time.Duration // how often Watch re-reads; default 100ms
	// ConnectTimeout bounds each new connection; default 2s.
	ConnectTimeout time.Duration
	// TLS, when set, is used for every connection (verified TLS: the
	// server's certificate and host name); it wins over the DSN's tls=.
	TLS *tls.Config
}

// Store is a Coordinator on MySQL or MariaDB.
type Store struct {
	*sqlstore.Store
}

// CheckDSN reports, without connecting, whether dsn is a connection string
// this backend can use. The driver's parser takes any port; a TCP address
// must have a numeric one.
func CheckDSN(dsn string) error {
	cfg, err := driver.ParseDSN(dsn)
	if err != nil {
		return err
	}
	if cfg.Net == "tcp" {
		_, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return fmt.Errorf("address %q: %w", cfg.Addr, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", cfg.Addr, port)
		}
	}
	return nil
}

// Open connects, migrates the schema and registers the cluster.
func Open(ctx context.Context, o Options) (*Store, error) {
	var err error
	if o.TablePrefix, err = sqlstore.TablePrefix(o.TablePrefix); err != nil {
		return nil, err
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 2 * time.Second
	}
	if err := CheckDSN(o.DSN); err != nil {
		return nil, fmt.Errorf("mysql connection string: %w", err)
	}
	cfg, err := driver.ParseDSN(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("mysql connection string: %w", err)
	}
	cfg.Timeout = o.ConnectTimeout
	if o.TLS != nil {
		t := o.TLS.Clone()
		if t.ServerName == "" {
			t.ServerName, _, _ = net.SplitHostPort(cfg.Addr)
		}
		cfg.TLS = t
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.ClientFoundRows = true // RowsAffected counts matched rows
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	// A client that vanishes inside a transaction must not hold its row
	// locks for hours: the server drops a connection silent this long, and
	// lock waits give up quickly so that callers see an error, not a hang.
	cfg.Params["wait_timeout"] = "3"
	cfg.Params["innodb_lock_wait_timeout"] = "1"
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql connection string: %w", err)
	}
	// Two pools, as on PostgreSQL: the coordination (lease renewals,
	// campaigns) never waits for a connection that the session store's
	// commits or the fenced data hold.
	db, data := sql.OpenDB(conn), sql.OpenDB(conn)
	db.SetConnMaxIdleTime(2 * time.Second) // below wait_timeout
	data.SetConnMaxIdleTime(2 * time.Second)
	s, err := sqlstore.Open(ctx, sqlstore.Options{
		Cluster: o.Cluster, Node: o.Node, Prefix: o.TablePrefix,
		PollInterval: o.PollInterval, ReadTimeout: o.ConnectTimeout,
		DB: db, Data: data, Dialect: dialect{sqlstore.TableNames(o.TablePrefix)},
	})
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return &Store{s}, nil
}

// dialect is MySQL's sqlstore.Dialect.
type dialect struct{ t sqlstore.Tables }

func (dialect) Name() string { return "mysql" }

// Schema: each version is a list of statements. MySQL commits DDL at once,
// so every statement is idempotent and a migration interrupted half way is
// simply run again.
func (d dialect) Schema() (string, [][]string) {
	t := d.t
	return `CREATE TABLE IF NOT EXISTS ` + t.Migrations + ` (version INT PRIMARY KEY, applied_at DATETIME(6) NOT NULL) ENGINE=InnoDB`,
		[][]string{{
			`CREATE TABLE IF NOT EXISTS ` + t.Counters + ` (name VARCHAR(64) PRIMARY KEY, value BIGINT NOT NULL) ENGINE=InnoDB`,
			`INSERT IGNORE INTO ` + t.Counters + ` (name, value) VALUES ('epoch', 0)`,
			`CREATE TABLE IF NOT EXISTS ` + t.Clusters + ` (cluster VARCHAR(64) PRIMARY KEY, rev BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS ` + t.Sessions + ` (
			id BIGINT AUTO_INCREMENT PRIMARY KEY,
			cluster VARCHAR(64) NOT NULL,
			node VARCHAR(64) NOT NULL,
			ttl_us BIGINT NOT NULL,
			created_at DATETIME(6) NOT NULL,
			expires_at DATETIME(6) NOT NULL,
			KEY (cluster, expires_at)) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS ` + t.Leader + ` (
			cluster VARCHAR(64) PRIMARY KEY,
			node VARCHAR(64) NULL,
			session_id BIGINT NULL,
			epoch BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS ` + t.Nodes + ` (
			cluster VARCHAR(64) NOT NULL,
			name VARCHAR(64) NOT NULL,
			session_id BIGINT NULL,
			status LONGTEXT NOT NULL,
			updated_at DATETIME(6) NOT NULL,
			PRIMARY KEY (cluster, name),
			KEY (session_id)) ENGINE=InnoDB`,
		}, {
			// 2: operator intents, the history and the fenced data.
			`CREATE TABLE IF NOT EXISTS ` + t.Maintenance + ` (
			cluster VARCHAR(64) NOT NULL,
			node VARCHAR(64) NOT NULL,
			since DATETIME(6) NOT NULL,
			PRIMARY KEY (cluster, node)) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS ` + t.Switchover + ` (
			cluster VARCHAR(64) PRIMARY KEY,
			id VARCHAR(64) NOT NULL,
			body LONGTEXT NOT NULL,
			expires_at DATETIME(6) NOT NULL) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS ` + t.Events + ` (
			id BIGINT AUTO_INCREMENT PRIMARY KEY,
			cluster VARCHAR(64) NOT NULL,
			at_ns BIGINT NOT NULL,
			body LONGTEXT NOT NULL,
			KEY (cluster, at_ns, id)) ENGINE=InnoDB`,
			`INSERT IGNORE INTO ` + t.Counters + ` (name, value) VALUES ('data_rev', 0)`,
			`CREATE TABLE IF NOT EXISTS ` + t.Data + ` (
			cluster VARCHAR(64) NOT NULL,
			k VARCHAR(200) NOT NULL,
			value LONGTEXT NOT NULL,
			rev BIGINT NOT NULL,
			PRIMARY KEY (cluster, k)) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS ` + t.DataIDs + ` (
			cluster VARCHAR(64) NOT NULL,
			id VARCHAR(200) NOT NULL,
			k VARCHAR(200) NOT NULL,
			rev BIGINT NOT NULL,
			created_at DATETIME(6) NOT NULL,
			PRIMARY KEY (cluster, id)) ENGINE=InnoDB`,
		}, {
			// 3: operators' node properties (aliases), bound to no session.
			`CREATE TABLE IF NOT EXISTS ` + t.Props + ` (
			cluster VARCHAR(64) NOT NULL,
			node VARCHAR(64) NOT NULL,
			props LONGTEXT NOT NULL,
			PRIMARY KEY (cluster, node)) ENGINE=InnoDB`,
		}}
}

// Exclusive runs f on one connection holding a named lock.
func (dialect) Exclusive(ctx context.Context, db *sql.DB, lock string, f func(q sqlstore.Querier) error) error {
	c, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var got sql.NullInt64
	if err := c.QueryRowContext(ctx, `SELECT GET_LOCK(?, 30)`, lock).Scan(&got); err != nil {
		return err
	}
	if !got.Valid || got.Int64 != 1 {
		return errors.New("another agent holds the migration lock for over 30s")
	}
	defer func() { _, _ = c.ExecContext(context.Background(), `SELECT RELEASE_LOCK(?)`, lock) }()
	return f(c)
}

func (dialect) Columns() sqlstore.Columns {
	return sqlstore.Columns{Key: "k", TTL: "ttl_us", TTLUnit: time.Microsecond}
}

func (dialect) Rebind(q string) string { return q }

func (dialect) Now() string { return "UTC_TIMESTAMP(6)" }

func (dialect) After(n string) string { return "UTC_TIMESTAMP(6) + INTERVAL (" + n + ") MICROSECOND" }

func (dialect) IfAbsent() string { return "" }

func (dialect) Upsert(_, set []string) string {
	sets := make([]string, len(set))
	for i, c := range set {
		sets[i] = c + " = VALUES(" + c + ")"
	}
	return " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
}

// Duplicate: MySQL's duplicate key error ends the statement, not the
// transaction.
func (dialect) Duplicate(err error) bool {
	var me *driver.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}

func (dialect) ShareLock(string) string { return " LOCK IN SHARE MODE" }

func (dialect) Insert(ctx context.Context, q sqlstore.Querier, query string, args ...any) (int64, error) {
	res, err := q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func counter(c sqlstore.Counter) string {
	if c == sqlstore.EpochCounter {
		return "epoch"
	}
	return "data_rev"
}

// Next: the counter row stays locked until the transaction ends, and
// LAST_INSERT_ID(expr) hands its new value back on this connection.
func (d dialect) Next(ctx context.Context, q sqlstore.Querier, c sqlstore.Counter) (int64, error) {
	res, err := q.ExecContext(ctx, `UPDATE `+d.t.Counters+` SET value = LAST_INSERT_ID(value + 1) WHERE name = ?`, counter(c))
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (d dialect) Current(ctx context.Context, q sqlstore.Querier, c sqlstore.Counter) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, `SELECT value FROM `+d.t.Counters+` WHERE name = ?`, counter(c)).Scan(&v)
	return v, err
}

func (d dialect) Raise(ctx context.Context, q sqlstore.Querier, c sqlstore.Counter, v int64) error {
	_, err := q.ExecContext(ctx, `UPDATE `+d.t.Counters+` SET value = GREATEST(value, ?) WHERE name = ?`, v, counter(c))
	return err
}

// Changed bumps the rev; MySQL has no notifications: watchers poll.
func (d dialect) Changed(ctx context.Context, q sqlstore.Querier, cluster string) error {
	_, err := q.ExecContext(ctx, `UPDATE `+d.t.Clusters+` SET rev = rev + 1 WHERE cluster = ?`, cluster)
	return err
}

// Broken: never. The driver checks each pooled connection before it
// hands it out again, so a restart costs no failed calls.
func (dialect) Broken(error) bool { return false }
