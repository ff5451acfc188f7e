// Package postgres is ha.Store on a PostgreSQL database: sqlstore's
// algorithm (and its safety argument) over the PostgreSQL dialect, with
// pgx as the driver (through database/sql) and LISTEN/NOTIFY as the wake
// source of Watch: every change notifies the cluster's channel in its
// transaction, so watchers re-read at once, and every poll interval as a
// fallback. Epochs and the revisions of fenced writes are sequences.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/sqlstore"
)

// Options configure a Store.
type Options struct {
	Cluster      string        // cluster name: rows of other clusters are never touched
	Node         string        // this agent's node name, recorded with its sessions
	DSN          string        // libpq connection string or postgres:// URL
	TablePrefix  string        // default "haven_"
	PollInterval time.Duration // fallback re-read period of Watch; default 500ms
	// ConnectTimeout bounds each new connection; default 2s.
	ConnectTimeout time.Duration
}

// Store is a Coordinator on PostgreSQL.
type Store struct {
	*sqlstore.Store
}

// CheckDSN reports, without connecting, whether dsn is a connection string
// this backend can use.
func CheckDSN(dsn string) error {
	_, err := pgxpool.ParseConfig(dsn)
	return err
}

// Open connects, migrates the schema and registers the cluster.
func Open(ctx context.Context, o Options) (*Store, error) {
	var err error
	if o.TablePrefix, err = sqlstore.TablePrefix(o.TablePrefix); err != nil {
		return nil, err
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 2 * time.Second
	}
	// pgxpool's parser, as CheckDSN's: it takes (and drops) the pool_*
	// parameters that earlier versions accepted.
	pc, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres connection string: %w", err)
	}
	cc := pc.ConnConfig
	tune(cc, o)
	t := sqlstore.TableNames(o.TablePrefix)
	s, err := sqlstore.Open(ctx, sqlstore.Options{
		Cluster: o.Cluster, Node: o.Node, Prefix: o.TablePrefix,
		PollInterval: o.PollInterval, ReadTimeout: o.ConnectTimeout,
		DB: stdlib.OpenDB(*cc), Data: stdlib.OpenDB(*cc.Copy()),
		Dialect: dialect{t},
		Listen: func(ctx context.Context) sqlstore.Waker {
			l := &listener{cc: cc, channel: t.Channel, cluster: o.Cluster, timeout: o.ConnectTimeout, poll: o.PollInterval}
			l.connect(ctx)
			return l
		},
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &Store{s}, nil
}

// tune makes every connection fail fast: a context that ends breaks off the
// round trip at once (instead of waiting for a cancel request that an
// unreachable server never gets), and the server aborts transactions whose
// client went silent, so that a cut-off agent cannot hold row locks.
func tune(cc *pgx.ConnConfig, o Options) {
	cc.ConnectTimeout = o.ConnectTimeout
	cc.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	cc.DialFunc = (&net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 5 * time.Second}).DialContext
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["idle_in_transaction_session_timeout"] = "2000"
	cc.RuntimeParams["application_name"] = "haven"
	cc.StatementCacheCapacity = 64
}

// dialect is PostgreSQL's sqlstore.Dialect.
type dialect struct{ t sqlstore.Tables }

func (dialect) Name() string { return "postgres" }

// Schema: each version is one string of statements, run in the
// migration's transaction (PostgreSQL's DDL is transactional).
func (d dialect) Schema() (string, [][]string) {
	t := d.t
	return `CREATE TABLE IF NOT EXISTS ` + t.Migrations + ` (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())`,
		[][]string{
			// 1: the first schema.
			{`CREATE SEQUENCE ` + t.Epoch + `;
		CREATE TABLE ` + t.Clusters + ` (cluster text PRIMARY KEY, rev bigint NOT NULL DEFAULT 0);
		CREATE TABLE ` + t.Sessions + ` (
			id bigserial PRIMARY KEY,
			cluster text NOT NULL,
			node text NOT NULL,
			ttl_ms bigint NOT NULL,
			created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
			expires_at timestamptz NOT NULL);
		CREATE INDEX ` + t.Sessions + `_cluster ON ` + t.Sessions + ` (cluster, expires_at);
		CREATE TABLE ` + t.Leader + ` (
			cluster text PRIMARY KEY,
			node text,
			session_id bigint,
			epoch bigint NOT NULL DEFAULT 0);
		CREATE TABLE ` + t.Nodes + ` (
			cluster text NOT NULL,
			name text NOT NULL,
			session_id bigint,
			status jsonb NOT NULL,
			updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
			PRIMARY KEY (cluster, name));
		CREATE INDEX ` + t.Nodes + `_session ON ` + t.Nodes + ` (session_id);`},
			// 2: operator intents, the history and the fenced data.
			{`CREATE TABLE ` + t.Maintenance + ` (
			cluster text NOT NULL,
			node text NOT NULL,
			since timestamptz NOT NULL DEFAULT clock_timestamp(),
			PRIMARY KEY (cluster, node));
		CREATE TABLE ` + t.Switchover + ` (
			cluster text PRIMARY KEY,
			id text NOT NULL,
			body jsonb NOT NULL,
			expires_at timestamptz NOT NULL);
		CREATE TABLE ` + t.Events + ` (
			id bigserial PRIMARY KEY,
			cluster text NOT NULL,
			at_ns bigint NOT NULL,
			body jsonb NOT NULL);
		CREATE INDEX ` + t.Events + `_order ON ` + t.Events + ` (cluster, at_ns, id);
		CREATE SEQUENCE ` + t.DataRev + `;
		CREATE TABLE ` + t.Data + ` (
			cluster text NOT NULL,
			key text NOT NULL,
			value text NOT NULL,
			rev bigint NOT NULL,
			PRIMARY KEY (cluster, key));
		CREATE TABLE ` + t.DataIDs + ` (
			cluster text NOT NULL,
			id text NOT NULL,
			key text NOT NULL,
			rev bigint NOT NULL,
			created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
			PRIMARY KEY (cluster, id));`},
			// 3: operators' node properties (aliases), bound to no session.
			{`CREATE TABLE ` + t.Props + ` (
			cluster text NOT NULL,
			node text NOT NULL,
			props jsonb NOT NULL,
			PRIMARY KEY (cluster, node));`},
		}
}

// Exclusive runs f in one transaction under an advisory lock.
func (dialect) Exclusive(ctx context.Context, db *sql.DB, lock string, f func(q sqlstore.Querier) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, lock); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (dialect) Columns() sqlstore.Columns {
	return sqlstore.Columns{Key: "key", TTL: "ttl_ms", TTLUnit: time.Millisecond}
}

// Rebind numbers the placeholders: ? becomes $1, $2, ... (no query has a
// ? in a literal).
func (dialect) Rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (dialect) Now() string { return "clock_timestamp()" }

func (dialect) After(n string) string {
	return "clock_timestamp() + CAST(" + n + " AS bigint) * interval '1 microsecond'"
}

func (dialect) IfAbsent() string { return " ON CONFLICT DO NOTHING" }

func (dialect) Upsert(conflict, set []string) string {
	sets := make([]string, len(set))
	for i, c := range set {
		sets[i] = c + " = excluded." + c
	}
	return " ON CONFLICT (" + strings.Join(conflict, ", ") + ") DO UPDATE SET " + strings.Join(sets, ", ")
}

func (dialect) Duplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func (dialect) ShareLock(alias string) string {
	if alias == "" {
		return " FOR SHARE"
	}
	return " FOR SHARE OF " + alias
}

func (dialect) Insert(ctx context.Context, q sqlstore.Querier, query string, args ...any) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, query+" RETURNING id", args...).Scan(&id)
	return id, err
}

func (d dialect) sequence(c sqlstore.Counter) string {
	if c == sqlstore.EpochCounter {
		return d.t.Epoch
	}
	return d.t.DataRev
}

func (d dialect) Next(ctx context.Context, q sqlstore.Querier, c sqlstore.Counter) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, `SELECT nextval('`+d.sequence(c)+`')`).Scan(&v)
	return v, err
}

func (d dialect) Current(ctx context.Context, q sqlstore.Querier, c sqlstore.Counter) (int64, error) {
	var v int64
	var called bool
	if err := q.QueryRowContext(ctx, `SELECT last_value, is_called FROM `+d.sequence(c)).Scan(&v, &called); err != nil {
		return 0, err
	}
	if !called {
		v--
	}
	return v, nil
}

func (d dialect) Raise(ctx context.Context, q sqlstore.Querier, c sqlstore.Counter, v int64) error {
	cur, err := d.Current(ctx, q, c)
	if err != nil || cur >= v {
		return err
	}
	seq := d.sequence(c)
	_, err = q.ExecContext(ctx, `SELECT setval('`+seq+`', greatest($1::bigint, (SELECT last_value FROM `+seq+`)))`, v)
	return err
}

// Changed bumps the rev and sends "REV CLUSTER" on the prefix's channel,
// in one statement.
func (d dialect) Changed(ctx context.Context, q sqlstore.Querier, cluster string) error {
	_, err := q.ExecContext(ctx, `WITH c AS (UPDATE `+d.t.Clusters+` SET rev = rev + 1 WHERE cluster = $1 RETURNING rev, cluster)
		SELECT pg_notify($2, rev::text || ' ' || cluster) FROM c`, cluster, d.t.Channel)
	return err
}

// news reports whether a notification's payload (Notify's) may tell of a
// change that a read of rev has not seen: one of this cluster after rev,
// or one it cannot parse (an older haven's, which sent only the cluster).
func news(payload, cluster string, rev int64) bool {
	r, c, ok := strings.Cut(payload, " ")
	if !ok {
		return payload == cluster
	}
	n, err := strconv.ParseInt(r, 10, 64)
	return c == cluster && (err != nil || rev < 0 || n > rev)
}

// Broken: when the server said so, or the socket was refused, reset or
// closed under us.
func (dialect) Broken(err error) bool {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe):
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return false
}

// listener is Watch's wake source: a connection of its own that LISTENs
// on the cluster's channel. While it is broken, Watch polls, and the
// listener dials again every poll interval, right before Watch's next read
// (so that no change between the read and the LISTEN goes unheard).
type listener struct {
	cc      *pgx.ConnConfig
	channel string
	cluster string
	timeout time.Duration
	poll    time.Duration
	ln      *pgx.Conn
	retry   time.Time
}

func (l *listener) connect(ctx context.Context) {
	if time.Now().Before(l.retry) {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	c, err := pgx.ConnectConfig(cctx, l.cc)
	if err == nil {
		if _, err = c.Exec(cctx, `LISTEN `+pgx.Identifier{l.channel}.Sanitize()); err != nil {
			_ = c.Close(context.Background())
		}
	}
	if err != nil {
		l.retry = time.Now().Add(l.poll)
		return
	}
	l.ln = c
}

// Wait skips the notifications of changes the last read (of rev) saw
// already, and those of other clusters sharing the channel: each would
// cost a read while the change that matters waits behind it.
func (l *listener) Wait(ctx context.Context, d time.Duration, rev int64) {
	if l.ln == nil {
		sqlstore.Sleep(ctx, d)
		l.connect(ctx)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		n, err := l.ln.WaitForNotification(wctx)
		if (err != nil && wctx.Err() == nil && ctx.Err() == nil) || l.ln.PgConn().IsClosed() {
			// The listening connection broke: poll until it is back.
			l.Close()
			l.connect(ctx)
			return
		}
		if err != nil || n == nil || news(n.Payload, l.cluster, rev) {
			return
		}
	}
}

func (l *listener) Close() {
	if l.ln != nil {
		_ = l.ln.Close(context.Background())
		l.ln = nil
	}
}

var _ ha.Store = (*Store)(nil)
