// Package mysql implements ha.Store (coordination, operator intents and
// history, fenced data) on a MySQL or MariaDB database shared by every
// agent of a cluster.
//
// It keeps the same tables and rules as the postgres backend (prefix
// "haven_" by default): schema_migrations, clusters (rev, the change
// counter), sessions (expires_at = UTC_TIMESTAMP(6) + ttl, computed by the
// server), leader (node, session_id, epoch), nodes (records bound to a
// session) and counters (the epoch counter, only ever incremented inside
// the campaign's transaction, and the revision of fenced writes), and the
// operators' tables: maintenance, switchover (until expires_at), events
// (pruned to ha.MaxEvents), data and data_ids (kv.go), and props (the
// node properties, bound to no session). A session whose expires_at has
// passed is gone for every reader before any cleanup runs. MySQL has no LISTEN/NOTIFY, so
// Watch re-reads every poll interval, and also when the earliest live
// session is due to expire.
package mysql

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/haven-ha/haven/internal/ha"
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
	o  Options
	db *sql.DB
	t  names

	mu  sync.Mutex
	sid int64
	ttl time.Duration // of the session, as the server stores it (ttl_us)
}

type names struct {
	migrations, clusters, sessions, leader, nodes, counters string
	maintenance, switchover, events, data, dataIDs, props   string
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
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(2 * time.Second) // below wait_timeout
	p := o.TablePrefix
	s := &Store{o: o, db: db, t: names{p + "schema_migrations", p + "clusters", p + "sessions", p + "leader", p + "nodes", p + "counters",
		p + "maintenance", p + "switchover", p + "events", p + "data", p + "data_ids", p + "props"}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// migrations: each is a list of statements. MySQL commits DDL at once, so
// every statement is idempotent and a migration interrupted half way is
// simply run again.
func (s *Store) migrations() [][]string {
	t := s.t
	return [][]string{{
		`CREATE TABLE IF NOT EXISTS ` + t.counters + ` (name VARCHAR(64) PRIMARY KEY, value BIGINT NOT NULL) ENGINE=InnoDB`,
		`INSERT IGNORE INTO ` + t.counters + ` (name, value) VALUES ('epoch', 0)`,
		`CREATE TABLE IF NOT EXISTS ` + t.clusters + ` (cluster VARCHAR(64) PRIMARY KEY, rev BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS ` + t.sessions + ` (
			id BIGINT AUTO_INCREMENT PRIMARY KEY,
			cluster VARCHAR(64) NOT NULL,
			node VARCHAR(64) NOT NULL,
			ttl_us BIGINT NOT NULL,
			created_at DATETIME(6) NOT NULL,
			expires_at DATETIME(6) NOT NULL,
			KEY (cluster, expires_at)) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS ` + t.leader + ` (
			cluster VARCHAR(64) PRIMARY KEY,
			node VARCHAR(64) NULL,
			session_id BIGINT NULL,
			epoch BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS ` + t.nodes + ` (
			cluster VARCHAR(64) NOT NULL,
			name VARCHAR(64) NOT NULL,
			session_id BIGINT NULL,
			status LONGTEXT NOT NULL,
			updated_at DATETIME(6) NOT NULL,
			PRIMARY KEY (cluster, name),
			KEY (session_id)) ENGINE=InnoDB`,
	}, {
		// 2: operator intents, the history and the fenced data.
		`CREATE TABLE IF NOT EXISTS ` + t.maintenance + ` (
			cluster VARCHAR(64) NOT NULL,
			node VARCHAR(64) NOT NULL,
			since DATETIME(6) NOT NULL,
			PRIMARY KEY (cluster, node)) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS ` + t.switchover + ` (
			cluster VARCHAR(64) PRIMARY KEY,
			id VARCHAR(64) NOT NULL,
			body LONGTEXT NOT NULL,
			expires_at DATETIME(6) NOT NULL) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS ` + t.events + ` (
			id BIGINT AUTO_INCREMENT PRIMARY KEY,
			cluster VARCHAR(64) NOT NULL,
			at_ns BIGINT NOT NULL,
			body LONGTEXT NOT NULL,
			KEY (cluster, at_ns, id)) ENGINE=InnoDB`,
		`INSERT IGNORE INTO ` + t.counters + ` (name, value) VALUES ('data_rev', 0)`,
		`CREATE TABLE IF NOT EXISTS ` + t.data + ` (
			cluster VARCHAR(64) NOT NULL,
			k VARCHAR(200) NOT NULL,
			value LONGTEXT NOT NULL,
			rev BIGINT NOT NULL,
			PRIMARY KEY (cluster, k)) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS ` + t.dataIDs + ` (
			cluster VARCHAR(64) NOT NULL,
			id VARCHAR(200) NOT NULL,
			k VARCHAR(200) NOT NULL,
			rev BIGINT NOT NULL,
			created_at DATETIME(6) NOT NULL,
			PRIMARY KEY (cluster, id)) ENGINE=InnoDB`,
	}, {
		// 3: operators' node properties (aliases), bound to no session.
		`CREATE TABLE IF NOT EXISTS ` + t.props + ` (
			cluster VARCHAR(64) NOT NULL,
			node VARCHAR(64) NOT NULL,
			props LONGTEXT NOT NULL,
			PRIMARY KEY (cluster, node)) ENGINE=InnoDB`,
	}}
}

// SchemaVersion is the schema version this code migrates to.
func (s *Store) SchemaVersion() int { return len(s.migrations()) }

func (s *Store) migrate(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("migrate the haven tables in mysql: %w", err)
		}
	}()
	c, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var got sql.NullInt64
	if err := c.QueryRowContext(ctx, `SELECT GET_LOCK(?, 30)`, s.t.migrations).Scan(&got); err != nil {
		return err
	}
	if !got.Valid || got.Int64 != 1 {
		return errors.New("another agent holds the migration lock for over 30s")
	}
	defer func() { _, _ = c.ExecContext(context.Background(), `SELECT RELEASE_LOCK(?)`, s.t.migrations) }()
	if _, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.t.migrations+` (version INT PRIMARY KEY, applied_at DATETIME(6) NOT NULL) ENGINE=InnoDB`); err != nil {
		return err
	}
	var have int
	if err := c.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+s.t.migrations).Scan(&have); err != nil {
		return err
	}
	ms := s.migrations()
	if have > len(ms) {
		return fmt.Errorf("the database has schema version %d, newer than this haven knows (%d); upgrade haven", have, len(ms))
	}
	for v := have + 1; v <= len(ms); v++ {
		for _, stmt := range ms[v-1] {
			if _, err := c.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("schema version %d: %w", v, err)
			}
		}
		if _, err := c.ExecContext(ctx, `INSERT INTO `+s.t.migrations+` (version, applied_at) VALUES (?, UTC_TIMESTAMP(6))`, v); err != nil {
			return err
		}
	}
	if _, err := c.ExecContext(ctx, `INSERT IGNORE INTO `+s.t.clusters+` (cluster) VALUES (?)`, s.o.Cluster); err != nil {
		return err
	}
	_, err = c.ExecContext(ctx, `INSERT IGNORE INTO `+s.t.leader+` (cluster) VALUES (?)`, s.o.Cluster)
	return err
}

func (s *Store) session() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sid
}

// inTx runs f in a READ COMMITTED transaction: each statement sees every
// commit made before it, as the rules need.
func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (s *Store) changed(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE `+s.t.clusters+` SET rev = rev + 1 WHERE cluster = ?`, s.o.Cluster)
	return err
}

func (s *Store) dropSessions(ctx context.Context, tx *sql.Tx, ids []int64) error {
	in := strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	for _, q := range []string{
		`DELETE FROM ` + s.t.sessions + ` WHERE id IN (` + in + `)`,
		`DELETE FROM ` + s.t.nodes + ` WHERE session_id IN (` + in + `)`,
		`UPDATE ` + s.t.leader + ` SET node = NULL, session_id = NULL WHERE session_id IN (` + in + `)`,
	} {
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return s.changed(ctx, tx)
}

// NewSession creates a session expiring ttl after the server processes it,
// and drops the previous one with everything bound to it.
func (s *Store) NewSession(ctx context.Context, ttl time.Duration) (time.Duration, error) {
	us := ttl.Microseconds()
	if us <= 0 {
		return 0, fmt.Errorf("session ttl %s is too short", ttl)
	}
	old := s.session()
	var id int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO `+s.t.sessions+` (cluster, node, ttl_us, created_at, expires_at)
			VALUES (?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND)`, s.o.Cluster, s.o.Node, us, us)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil || old == 0 {
			return err
		}
		return s.dropSessions(ctx, tx, []int64{old})
	})
	if err != nil {
		return 0, fmt.Errorf("create session: %w", err)
	}
	s.mu.Lock()
	s.sid, s.ttl = id, time.Duration(us)*time.Microsecond
	s.mu.Unlock()
	return time.Duration(us) * time.Microsecond, nil
}

// Renew extends the session to expire ttl after the server processes the
// request (the timing contract). An expired session cannot be renewed.
func (s *Store) Renew(ctx context.Context) (time.Duration, error) {
	id := s.session()
	if id == 0 {
		return 0, ha.ErrSessionLost
	}
	res, err := s.db.ExecContext(ctx, `UPDATE `+s.t.sessions+` SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ttl_us MICROSECOND
		WHERE id = ? AND expires_at > UTC_TIMESTAMP(6)`, id)
	if err != nil {
		return 0, fmt.Errorf("renew session: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, ha.ErrSessionLost
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ttl, nil
}

// Campaign takes the leader row if it is vacant or its session has expired,
// in one transaction; the epoch comes from the counter row, incremented in
// the same transaction.
func (s *Store) Campaign(ctx context.Context, node string) (ha.Epoch, error) {
	id := s.session()
	if id == 0 {
		return 0, ha.ErrSessionLost
	}
	var epoch int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var holder, held sql.NullInt64
		var holderNode sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT session_id, node, epoch FROM `+s.t.leader+` WHERE cluster = ? FOR UPDATE`, s.o.Cluster).Scan(&holder, &holderNode, &held); err != nil {
			return err
		}
		var mine bool
		err := tx.QueryRowContext(ctx, `SELECT expires_at > UTC_TIMESTAMP(6) FROM `+s.t.sessions+` WHERE id = ?`, id).Scan(&mine)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && !mine) {
			return ha.ErrSessionLost
		}
		if err != nil {
			return err
		}
		if holder.Valid {
			var live bool
			err := tx.QueryRowContext(ctx, `SELECT expires_at > UTC_TIMESTAMP(6) FROM `+s.t.sessions+` WHERE id = ?`, holder.Int64).Scan(&live)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if live && holder.Int64 == id && holderNode.Valid && holderNode.String == node && held.Valid {
				// Ours already: a campaign whose answer was lost, repeated.
				epoch = held.Int64
				return nil
			}
			if live {
				return ha.ErrTaken
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE `+s.t.counters+` SET value = value + 1 WHERE name = 'epoch'`); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT value FROM `+s.t.counters+` WHERE name = 'epoch'`).Scan(&epoch); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE `+s.t.leader+` SET node = ?, session_id = ?, epoch = ? WHERE cluster = ?`, node, id, epoch, s.o.Cluster); err != nil {
			return err
		}
		return s.changed(ctx, tx)
	})
	switch {
	case errors.Is(err, ha.ErrTaken), errors.Is(err, ha.ErrSessionLost):
		return 0, err
	case err != nil:
		return 0, fmt.Errorf("campaign: %w", err)
	}
	return ha.Epoch(epoch), nil
}

// Resign vacates the leader row if node holds it at epoch.
func (s *Store) Resign(ctx context.Context, node string, epoch ha.Epoch) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE `+s.t.leader+` SET node = NULL, session_id = NULL
			WHERE cluster = ? AND node = ? AND epoch = ?`, s.o.Cluster, node, int64(epoch))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return ha.ErrNotLeader
		}
		return s.changed(ctx, tx)
	})
	if err != nil && !errors.Is(err, ha.ErrNotLeader) {
		return fmt.Errorf("resign epoch %d: %w", epoch, err)
	}
	return err
}

// Publish writes node's status record, bound to the session.
func (s *Store) Publish(ctx context.Context, st ha.NodeStatus) error {
	id := s.session()
	if id == 0 {
		return ha.ErrSessionLost
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO `+s.t.nodes+` (cluster, name, session_id, status, updated_at)
			SELECT ?, ?, id, ?, UTC_TIMESTAMP(6) FROM `+s.t.sessions+` WHERE id = ? AND expires_at > UTC_TIMESTAMP(6)
			ON DUPLICATE KEY UPDATE session_id = VALUES(session_id), status = VALUES(status), updated_at = VALUES(updated_at)`,
			s.o.Cluster, st.Name, string(b), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return ha.ErrSessionLost
		}
		return s.changed(ctx, tx)
	})
	if err != nil && !errors.Is(err, ha.ErrSessionLost) {
		return fmt.Errorf("publish status: %w", err)
	}
	return err
}

// read returns a snapshot, cleaning up expired sessions first if it sees
// any; wake is how long until the earliest live session, or the pending
// switchover, expires (0: none).
func (s *Store) read(ctx context.Context) (ha.Snapshot, time.Duration, error) {
	for attempt := 0; ; attempt++ {
		snap := ha.Snapshot{Nodes: map[string]ha.NodeStatus{}}
		var wake time.Duration
		soonest := func(now, exp time.Time) {
			if d := exp.Sub(now); wake == 0 || d < wake {
				wake = d
			}
		}
		var (
			now     time.Time
			node    sql.NullString
			epoch   int64
			exp     sql.NullTime
			expired int
		)
		err := s.db.QueryRowContext(ctx, `SELECT UTC_TIMESTAMP(6), c.rev, l.node, l.epoch, s.expires_at,
				(SELECT COUNT(*) FROM `+s.t.sessions+` x WHERE x.cluster = c.cluster AND x.expires_at <= UTC_TIMESTAMP(6))
			FROM `+s.t.clusters+` c JOIN `+s.t.leader+` l ON l.cluster = c.cluster
			LEFT JOIN `+s.t.sessions+` s ON s.id = l.session_id
			WHERE c.cluster = ?`, s.o.Cluster).Scan(&now, &snap.Rev, &node, &epoch, &exp, &expired)
		if err != nil {
			return snap, 0, err
		}
		if expired > 0 && attempt == 0 {
			if err := s.cleanup(ctx); err != nil {
				return snap, 0, err
			}
			continue
		}
		if node.Valid && exp.Valid && exp.Time.After(now) {
			snap.Leader = ha.Leader{Node: node.String, Epoch: ha.Epoch(epoch)}
			soonest(now, exp.Time)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT n.name, n.status, s.expires_at, UTC_TIMESTAMP(6)
			FROM `+s.t.nodes+` n JOIN `+s.t.sessions+` s ON s.id = n.session_id WHERE n.cluster = ?`, s.o.Cluster)
		if err != nil {
			return snap, 0, err
		}
		for rows.Next() {
			var name, status string
			var e, n time.Time
			if err := rows.Scan(&name, &status, &e, &n); err != nil {
				rows.Close()
				return snap, 0, err
			}
			if !e.After(n) {
				continue
			}
			sqlstore.SetNode(&snap, name, []byte(status))
			soonest(n, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return snap, 0, err
		}
		if err := s.readIntents(ctx, &snap, soonest); err != nil {
			return snap, 0, err
		}
		return snap, wake, nil
	}
}

// readIntents adds the maintenance flags and the unexpired switchover to
// snap; the watcher re-reads when the switchover expires, so that it is
// seen to go (etcd deletes it with its lease).
func (s *Store) readIntents(ctx context.Context, snap *ha.Snapshot, soonest func(now, exp time.Time)) error {
	rows, err := s.db.QueryContext(ctx, `SELECT node FROM `+s.t.maintenance+` WHERE cluster = ?`, s.o.Cluster)
	if err != nil {
		return err
	}
	for rows.Next() {
		var node string
		if err := rows.Scan(&node); err != nil {
			rows.Close()
			return err
		}
		sqlstore.Maintain(snap, node)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT node, props FROM `+s.t.props+` WHERE cluster = ?`, s.o.Cluster)
	if err != nil {
		return err
	}
	for rows.Next() {
		var node string
		var props []byte
		if err := rows.Scan(&node, &props); err != nil {
			rows.Close()
			return err
		}
		sqlstore.SetProps(snap, node, props)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var (
		body     string
		exp, now time.Time
	)
	err = s.db.QueryRowContext(ctx, `SELECT body, expires_at, UTC_TIMESTAMP(6) FROM `+s.t.switchover+`
		WHERE cluster = ? AND expires_at > UTC_TIMESTAMP(6)`, s.o.Cluster).Scan(&body, &exp, &now)
	switch {
	case err == nil:
		sqlstore.SetSwitchover(snap, []byte(body))
		soonest(now, exp)
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	return nil
}

// cleanup deletes the cluster's expired sessions and what is bound to them.
func (s *Store) cleanup(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id FROM `+s.t.sessions+` WHERE cluster = ? AND expires_at <= UTC_TIMESTAMP(6) FOR UPDATE`, s.o.Cluster)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if len(ids) == 0 {
			return rows.Err()
		}
		return s.dropSessions(ctx, tx, ids)
	})
}

// Watch re-reads the store every poll interval, and when a live session is
// due to expire, and sends a snapshot whenever what it shows changed.
func (s *Store) Watch(ctx context.Context) <-chan ha.Snapshot {
	out := make(chan ha.Snapshot, 1)
	go func() {
		defer close(out)
		var w sqlstore.Watcher
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, s.o.ConnectTimeout)
			snap, wake, err := s.read(rctx)
			cancel()
			wait := s.o.PollInterval
			if err == nil {
				if !w.Send(ctx, out, snap) {
					return
				}
				wait = sqlstore.NextRead(wait, wake)
			}
			sqlstore.Sleep(ctx, wait)
		}
	}()
	return out
}

// Close drops the session (best effort) and closes the connections.
func (s *Store) Close() error {
	if id := s.session(); id != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.inTx(ctx, func(tx *sql.Tx) error { return s.dropSessions(ctx, tx, []int64{id}) })
		cancel()
		s.mu.Lock()
		s.sid = 0
		s.mu.Unlock()
	}
	return s.db.Close()
}

// MaxEpoch returns the epoch counter: no epoch issued so far exceeds it.
func (s *Store) MaxEpoch(ctx context.Context) (ha.Epoch, error) {
	var v int64
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM `+s.t.counters+` WHERE name = 'epoch'`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the epoch counter: %w", err)
	}
	return ha.Epoch(v), nil
}

// RaiseEpoch makes every future epoch greater than e (it never lowers the counter).
func (s *Store) RaiseEpoch(ctx context.Context, e ha.Epoch) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE `+s.t.counters+` SET value = GREATEST(value, ?) WHERE name = 'epoch'`, int64(e)); err != nil {
		return fmt.Errorf("raise the epoch counter to %d: %w", e, err)
	}
	return nil
}

// KeepRecords stores node records as history, bound to no session.
func (s *Store) KeepRecords(ctx context.Context, recs []ha.NodeStatus) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, st := range recs {
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT IGNORE INTO `+s.t.nodes+` (cluster, name, session_id, status, updated_at)
				VALUES (?, ?, NULL, ?, UTC_TIMESTAMP(6))`, s.o.Cluster, st.Name, string(b)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Records returns every node record of the cluster, live or kept as history.
func (s *Store) Records(ctx context.Context) ([]ha.NodeStatus, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT status FROM `+s.t.nodes+` WHERE cluster = ? ORDER BY name`, s.o.Cluster)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ha.NodeStatus
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var st ha.NodeStatus
		if err := json.Unmarshal([]byte(b), &st); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// DB exposes the database handle (for tools and tests).
func (s *Store) DB() *sql.DB { return s.db }

var _ ha.Store = (*Store)(nil)
