// Package postgres implements ha.Store (coordination, operator intents and
// history, fenced data) on a PostgreSQL database shared
// by every agent of a cluster (and possibly by several clusters).
//
// Tables (prefix "haven_" by default), created and migrated by Open:
//
//	schema_migrations  applied schema versions
//	clusters           one row per cluster: rev, the change counter
//	sessions           one row per agent session: expires_at = clock_timestamp() + ttl
//	leader             one row per cluster: node, session_id, epoch
//	nodes              each agent's ha.NodeStatus, bound to its session
//	epoch (sequence)   the fencing epochs: nextval only grows
//	maintenance        one row per node in maintenance
//	switchover         the pending ha.Switchover, until expires_at
//	events             the history, pruned to ha.MaxEvents
//	data, data_ids     the service's fenced data and the idempotency ids
//	                   of the writes that committed (kv.go)
//	data_rev (sequence) the revisions of fenced writes
//	props              operators' ha.NodeProps per node (the alias), no session
//
// Every expiry is computed and compared by the database with its own clock
// (clock_timestamp()), never an agent's. A session whose expires_at has
// passed is gone for every reader at once, before any cleanup has run: a
// campaign may take a leader row whose session expired, and snapshots show
// neither that leader nor that session's node records. Any agent deletes
// expired sessions when it notices them.
//
// Every change bumps the cluster's rev and sends NOTIFY in the same
// transaction, so watchers (LISTEN) re-read at once; they also re-read when
// the earliest live session is due to expire, and every poll interval as a
// fallback.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

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
	o    Options
	pool *pgxpool.Pool   // coordination: sessions, leader, records, intents
	data *pgxpool.Pool   // the service's fenced data and the history (kv.go, ops.go)
	cc   *pgx.ConnConfig // for the LISTEN connection
	t    names

	mu  sync.Mutex
	sid int64 // current session, 0 when none
}

// names are the qualified table names.
type names struct {
	migrations, clusters, sessions, leader, nodes, epoch, channel string
	maintenance, switchover, events, data, dataIDs, dataRev       string
	props                                                         string
}

func tableNames(prefix string) names {
	return names{
		migrations: prefix + "schema_migrations",
		clusters:   prefix + "clusters",
		sessions:   prefix + "sessions",
		leader:     prefix + "leader",
		nodes:      prefix + "nodes",
		epoch:      prefix + "epoch",
		channel:    prefix + "changes",

		maintenance: prefix + "maintenance",
		switchover:  prefix + "switchover",
		events:      prefix + "events",
		data:        prefix + "data",
		dataIDs:     prefix + "data_ids",
		dataRev:     prefix + "data_rev",
		props:       prefix + "props",
	}
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
	pc, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres connection string: %w", err)
	}
	tune(pc.ConnConfig, o)
	pc.MaxConns = 8
	pc.MinConns = 1
	pc.HealthCheckPeriod = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	// The service's data traffic gets its own connections, so that a burst
	// of it (retries after a database restart) never makes a lease renewal
	// wait for a connection.
	dc := pc.Copy()
	dc.MinConns = 0
	data, err := pgxpool.NewWithConfig(ctx, dc)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	s := &Store{o: o, pool: pool, data: data, cc: pc.ConnConfig.Copy(), t: tableNames(o.TablePrefix)}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		data.Close()
		return nil, err
	}
	return s, nil
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

// migrations are applied in order, each once, inside one transaction under
// an advisory lock, so agents that start together do not race.
func (s *Store) migrations() []string {
	t := s.t
	return []string{
		// 1: the first schema.
		`CREATE SEQUENCE ` + t.epoch + `;
		CREATE TABLE ` + t.clusters + ` (cluster text PRIMARY KEY, rev bigint NOT NULL DEFAULT 0);
		CREATE TABLE ` + t.sessions + ` (
			id bigserial PRIMARY KEY,
			cluster text NOT NULL,
			node text NOT NULL,
			ttl_ms bigint NOT NULL,
			created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
			expires_at timestamptz NOT NULL);
		CREATE INDEX ` + t.sessions + `_cluster ON ` + t.sessions + ` (cluster, expires_at);
		CREATE TABLE ` + t.leader + ` (
			cluster text PRIMARY KEY,
			node text,
			session_id bigint,
			epoch bigint NOT NULL DEFAULT 0);
		CREATE TABLE ` + t.nodes + ` (
			cluster text NOT NULL,
			name text NOT NULL,
			session_id bigint,
			status jsonb NOT NULL,
			updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
			PRIMARY KEY (cluster, name));
		CREATE INDEX ` + t.nodes + `_session ON ` + t.nodes + ` (session_id);`,
		// 2: operator intents, the history and the fenced data.
		`CREATE TABLE ` + t.maintenance + ` (
			cluster text NOT NULL,
			node text NOT NULL,
			since timestamptz NOT NULL DEFAULT clock_timestamp(),
			PRIMARY KEY (cluster, node));
		CREATE TABLE ` + t.switchover + ` (
			cluster text PRIMARY KEY,
			id text NOT NULL,
			body jsonb NOT NULL,
			expires_at timestamptz NOT NULL);
		CREATE TABLE ` + t.events + ` (
			id bigserial PRIMARY KEY,
			cluster text NOT NULL,
			at_ns bigint NOT NULL,
			body jsonb NOT NULL);
		CREATE INDEX ` + t.events + `_order ON ` + t.events + ` (cluster, at_ns, id);
		CREATE SEQUENCE ` + t.dataRev + `;
		CREATE TABLE ` + t.data + ` (
			cluster text NOT NULL,
			key text NOT NULL,
			value text NOT NULL,
			rev bigint NOT NULL,
			PRIMARY KEY (cluster, key));
		CREATE TABLE ` + t.dataIDs + ` (
			cluster text NOT NULL,
			id text NOT NULL,
			key text NOT NULL,
			rev bigint NOT NULL,
			created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
			PRIMARY KEY (cluster, id));`,
		// 3: operators' node properties (aliases), bound to no session.
		`CREATE TABLE ` + t.props + ` (
			cluster text NOT NULL,
			node text NOT NULL,
			props jsonb NOT NULL,
			PRIMARY KEY (cluster, node));`,
	}
}

// SchemaVersion is the schema version this code migrates to.
func (s *Store) SchemaVersion() int { return len(s.migrations()) }

func (s *Store) migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, s.t.migrations); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.t.migrations+` (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())`); err != nil {
			return err
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+s.t.migrations).Scan(&have); err != nil {
			return err
		}
		ms := s.migrations()
		if have > len(ms) {
			return fmt.Errorf("the database has schema version %d, newer than this haven knows (%d); upgrade haven", have, len(ms))
		}
		for v := have + 1; v <= len(ms); v++ {
			if _, err := tx.Exec(ctx, ms[v-1]); err != nil {
				return fmt.Errorf("schema version %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+s.t.migrations+` (version) VALUES ($1)`, v); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.t.clusters+` (cluster) VALUES ($1) ON CONFLICT DO NOTHING`, s.o.Cluster); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+s.t.leader+` (cluster) VALUES ($1) ON CONFLICT DO NOTHING`, s.o.Cluster)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate the haven tables in postgres: %w", err)
	}
	return nil
}

func (s *Store) session() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sid
}

// changed bumps the cluster's rev and notifies watchers when tx commits.
func (s *Store) changed(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `UPDATE `+s.t.clusters+` SET rev = rev + 1 WHERE cluster = $1`, s.o.Cluster); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.t.channel, s.o.Cluster)
	return err
}

// dropSessions deletes sessions ids with what is bound to them.
func (s *Store) dropSessions(ctx context.Context, tx pgx.Tx, ids []int64) error {
	if _, err := tx.Exec(ctx, `DELETE FROM `+s.t.sessions+` WHERE id = ANY($1)`, ids); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+s.t.nodes+` WHERE session_id = ANY($1)`, ids); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE `+s.t.leader+` SET node = NULL, session_id = NULL WHERE cluster = $1 AND session_id = ANY($2)`, s.o.Cluster, ids); err != nil {
		return err
	}
	return s.changed(ctx, tx)
}

// NewSession creates a session expiring ttl after the database processes it,
// and drops the previous one with everything bound to it.
func (s *Store) NewSession(ctx context.Context, ttl time.Duration) (time.Duration, error) {
	ms := ttl.Milliseconds()
	if ms <= 0 {
		return 0, fmt.Errorf("session ttl %s is too short", ttl)
	}
	old := s.session()
	var id int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO `+s.t.sessions+` (cluster, node, ttl_ms, expires_at)
			VALUES ($1, $2, $3::bigint, clock_timestamp() + $3::bigint * interval '1 millisecond') RETURNING id`,
			s.o.Cluster, s.o.Node, ms).Scan(&id)
		if err != nil || old == 0 {
			return err
		}
		return s.dropSessions(ctx, tx, []int64{old})
	})
	if err != nil {
		return 0, fmt.Errorf("create session: %w", err)
	}
	s.mu.Lock()
	s.sid = id
	s.mu.Unlock()
	return time.Duration(ms) * time.Millisecond, nil
}

// Renew extends the session to expire ttl after the database processes the
// request, which is after the caller read its clock: the timing contract.
// An expired session cannot be renewed, even if nobody has deleted it yet.
func (s *Store) Renew(ctx context.Context) (time.Duration, error) {
	id := s.session()
	if id == 0 {
		return 0, ha.ErrSessionLost
	}
	var ms int64
	err := s.pool.QueryRow(ctx, `UPDATE `+s.t.sessions+`
		SET expires_at = clock_timestamp() + ttl_ms * interval '1 millisecond'
		WHERE id = $1 AND expires_at > clock_timestamp() RETURNING ttl_ms`, id).Scan(&ms)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ha.ErrSessionLost
	}
	if err != nil {
		s.dropIfBroken(err)
		return 0, fmt.Errorf("renew session: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// dropIfBroken closes every pooled connection when err says the server
// went away (a restart, a cut): each idle connection would otherwise fail
// once more before the pool drops it, one renewal after the other, and
// the active could lose its lease to dead connections after a restart
// shorter than the lease. The next call dials afresh.
//
// Only when the server said so, or the socket was refused, reset or closed
// under us: a timeout (a slow, loaded server) already closes its one
// connection, and dropping them all then would only add load.
func (s *Store) dropIfBroken(err error) {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe):
		if !strings.HasPrefix(pe.Code, "08") && pe.Code != "57P01" && pe.Code != "57P02" && pe.Code != "57P03" {
			return // an answer from a working server
		}
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return
	}
	s.pool.Reset()
	s.data.Reset()
}

// Campaign takes the leader row if it is vacant or its session has expired,
// in one transaction; the epoch is the next value of a sequence.
func (s *Store) Campaign(ctx context.Context, node string) (ha.Epoch, error) {
	id := s.session()
	if id == 0 {
		return 0, ha.ErrSessionLost
	}
	var epoch int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Lock the row first; the holder's liveness is read by the next
		// statement, which (read committed) sees every commit before the lock.
		var holder *int64
		var holderNode *string
		var held *int64
		err := tx.QueryRow(ctx, `SELECT session_id, node, epoch FROM `+s.t.leader+` WHERE cluster = $1 FOR UPDATE`, s.o.Cluster).Scan(&holder, &holderNode, &held)
		if err != nil {
			return err
		}
		holderLive := false
		if holder != nil {
			err = tx.QueryRow(ctx, `SELECT coalesce(bool_or(expires_at > clock_timestamp()), false) FROM `+s.t.sessions+` WHERE id = $1`, *holder).Scan(&holderLive)
			if err != nil {
				return err
			}
		}
		var mine bool
		err = tx.QueryRow(ctx, `SELECT expires_at > clock_timestamp() FROM `+s.t.sessions+` WHERE id = $1`, id).Scan(&mine)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !mine) {
			return ha.ErrSessionLost
		}
		if err != nil {
			return err
		}
		if holderLive && *holder == id && holderNode != nil && *holderNode == node && held != nil {
			// Ours already: a campaign whose answer was lost, repeated.
			epoch = *held
			return nil
		}
		if holderLive {
			return ha.ErrTaken
		}
		err = tx.QueryRow(ctx, `UPDATE `+s.t.leader+` SET node = $2, session_id = $3, epoch = nextval('`+s.t.epoch+`')
			WHERE cluster = $1 RETURNING epoch`, s.o.Cluster, node, id).Scan(&epoch)
		if err != nil {
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
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE `+s.t.leader+` SET node = NULL, session_id = NULL
			WHERE cluster = $1 AND node = $2 AND epoch = $3`, s.o.Cluster, node, int64(epoch))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
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
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO `+s.t.nodes+` (cluster, name, session_id, status)
			SELECT $1, $2, id, $4 FROM `+s.t.sessions+` WHERE id = $3 AND expires_at > clock_timestamp()
			ON CONFLICT (cluster, name) DO UPDATE SET session_id = excluded.session_id, status = excluded.status, updated_at = clock_timestamp()`,
			s.o.Cluster, st.Name, id, b)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ha.ErrSessionLost
		}
		return s.changed(ctx, tx)
	})
	if err != nil && !errors.Is(err, ha.ErrSessionLost) {
		return fmt.Errorf("publish status: %w", err)
	}
	return err
}

// read cleans up expired sessions and reads a snapshot as of one instant of
// the database clock. wake is how long until the earliest live session in
// it, or its pending switchover, expires (0 if none).
func (s *Store) read(ctx context.Context) (snap ha.Snapshot, wake time.Duration, err error) {
	snap.Nodes = map[string]ha.NodeStatus{}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var now time.Time
		if err := tx.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM `+s.t.sessions+` WHERE cluster = $1 AND expires_at <= $2 RETURNING id`, s.o.Cluster, now)
		if err != nil {
			return err
		}
		expired, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if len(expired) > 0 {
			if err := s.dropSessions(ctx, tx, expired); err != nil {
				return err
			}
		}
		if err := tx.QueryRow(ctx, `SELECT rev FROM `+s.t.clusters+` WHERE cluster = $1`, s.o.Cluster).Scan(&snap.Rev); err != nil {
			return err
		}
		var left float64
		soonest := func(secs float64) {
			if d := time.Duration(secs * float64(time.Second)); wake == 0 || d < wake {
				wake = d
			}
		}
		err = tx.QueryRow(ctx, `SELECT l.node, l.epoch, extract(epoch FROM s.expires_at - $2)
			FROM `+s.t.leader+` l JOIN `+s.t.sessions+` s ON s.id = l.session_id
			WHERE l.cluster = $1 AND s.expires_at > $2`, s.o.Cluster, now).Scan(&snap.Leader.Node, &snap.Leader.Epoch, &left)
		switch {
		case err == nil:
			soonest(left)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		rows, err = tx.Query(ctx, `SELECT n.name, n.status, extract(epoch FROM s.expires_at - $2)
			FROM `+s.t.nodes+` n JOIN `+s.t.sessions+` s ON s.id = n.session_id
			WHERE n.cluster = $1 AND s.expires_at > $2`, s.o.Cluster, now)
		if err != nil {
			return err
		}
		var name string
		var status []byte
		_, err = pgx.ForEachRow(rows, []any{&name, &status, &left}, func() error {
			sqlstore.SetNode(&snap, name, status)
			soonest(left)
			return nil
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT node FROM `+s.t.maintenance+` WHERE cluster = $1`, s.o.Cluster)
		if err != nil {
			return err
		}
		if _, err = pgx.ForEachRow(rows, []any{&name}, func() error { sqlstore.Maintain(&snap, name); return nil }); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT node, props FROM `+s.t.props+` WHERE cluster = $1`, s.o.Cluster)
		if err != nil {
			return err
		}
		if _, err = pgx.ForEachRow(rows, []any{&name, &status}, func() error { sqlstore.SetProps(&snap, name, status); return nil }); err != nil {
			return err
		}
		// A switchover is shown until it expires, and the watcher re-reads
		// then, so that it is seen to go (etcd deletes it with its lease).
		err = tx.QueryRow(ctx, `SELECT body, extract(epoch FROM expires_at - $2) FROM `+s.t.switchover+`
			WHERE cluster = $1 AND expires_at > $2`, s.o.Cluster, now).Scan(&status, &left)
		switch {
		case err == nil:
			sqlstore.SetSwitchover(&snap, status)
			soonest(left)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		return nil
	})
	return snap, wake, err
}

// Watch streams snapshots: at start, on every NOTIFY, when a live session
// is due to expire, and every poll interval.
func (s *Store) Watch(ctx context.Context) <-chan ha.Snapshot {
	out := make(chan ha.Snapshot, 1)
	go func() {
		defer close(out)
		var (
			ln      *pgx.Conn
			w       sqlstore.Watcher
			retryLn time.Time
		)
		defer func() {
			if ln != nil {
				_ = ln.Close(context.Background())
			}
		}()
		for ctx.Err() == nil {
			if ln == nil && !time.Now().Before(retryLn) {
				var err error
				if ln, err = s.listen(ctx); err != nil {
					ln = nil
					retryLn = time.Now().Add(s.o.PollInterval)
				}
			}
			rctx, cancel := context.WithTimeout(ctx, s.o.ConnectTimeout)
			snap, wake, err := s.read(rctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.dropIfBroken(err)
			}
			wait := s.o.PollInterval
			if err == nil {
				if !w.Send(ctx, out, snap) {
					return
				}
				wait = sqlstore.NextRead(wait, wake)
			}
			if ln == nil {
				sqlstore.Sleep(ctx, wait)
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, wait)
			_, err = ln.WaitForNotification(wctx)
			cancel()
			if err != nil && wctx.Err() == nil && ctx.Err() == nil {
				// The listening connection broke: poll until it is back.
				_ = ln.Close(context.Background())
				ln = nil
			}
			if ln != nil && ln.PgConn().IsClosed() {
				ln = nil
			}
		}
	}()
	return out
}

// listen opens the connection that waits for NOTIFY.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, s.o.ConnectTimeout)
	defer cancel()
	c, err := pgx.ConnectConfig(cctx, s.cc)
	if err != nil {
		return nil, err
	}
	if _, err := c.Exec(cctx, `LISTEN `+pgx.Identifier{s.t.channel}.Sanitize()); err != nil {
		_ = c.Close(context.Background())
		return nil, err
	}
	return c, nil
}

// Close drops the session (best effort) and closes the connections.
func (s *Store) Close() error {
	if id := s.session(); id != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return s.dropSessions(ctx, tx, []int64{id}) })
		cancel()
		s.mu.Lock()
		s.sid = 0
		s.mu.Unlock()
	}
	s.pool.Close()
	s.data.Close()
	return nil
}

// MaxEpoch returns the epoch counter: no epoch issued so far exceeds it.
func (s *Store) MaxEpoch(ctx context.Context) (ha.Epoch, error) {
	var v int64
	var called bool
	if err := s.pool.QueryRow(ctx, `SELECT last_value, is_called FROM `+s.t.epoch).Scan(&v, &called); err != nil {
		return 0, fmt.Errorf("read the epoch counter: %w", err)
	}
	if !called {
		v--
	}
	return ha.Epoch(v), nil
}

// RaiseEpoch makes every future epoch greater than e (it never lowers the counter).
func (s *Store) RaiseEpoch(ctx context.Context, e ha.Epoch) error {
	cur, err := s.MaxEpoch(ctx)
	if err != nil {
		return err
	}
	if cur >= e {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `SELECT setval('`+s.t.epoch+`', greatest($1::bigint, (SELECT last_value FROM `+s.t.epoch+`)))`, int64(e)); err != nil {
		return fmt.Errorf("raise the epoch counter to %d: %w", e, err)
	}
	return nil
}

// KeepRecords stores node records as history, bound to no session: they
// are not shown as live nodes, and a node's first publish replaces its own.
func (s *Store) KeepRecords(ctx context.Context, recs []ha.NodeStatus) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, st := range recs {
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+s.t.nodes+` (cluster, name, session_id, status) VALUES ($1, $2, NULL, $3)
				ON CONFLICT (cluster, name) DO NOTHING`, s.o.Cluster, st.Name, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// Records returns every node record of the cluster, live or kept as history.
func (s *Store) Records(ctx context.Context) ([]ha.NodeStatus, error) {
	rows, err := s.pool.Query(ctx, `SELECT status FROM `+s.t.nodes+` WHERE cluster = $1 ORDER BY name`, s.o.Cluster)
	if err != nil {
		return nil, err
	}
	var out []ha.NodeStatus
	var b []byte
	_, err = pgx.ForEachRow(rows, []any{&b}, func() error {
		var st ha.NodeStatus
		if err := json.Unmarshal(b, &st); err != nil {
			return err
		}
		out = append(out, st)
		return nil
	})
	return out, err
}

// Pool exposes the connection pool (for tools and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

var _ ha.Store = (*Store)(nil)
