package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// Options configure a Store; the backend packages fill them in.
type Options struct {
	Cluster string // cluster name: rows of other clusters are never touched
	Node    string // this agent's node name, recorded with its sessions
	Prefix  string // table prefix, checked by TablePrefix
	// PollInterval is how often Watch re-reads at the latest; with a
	// Listen wake source it is only a fallback.
	PollInterval time.Duration
	// ReadTimeout bounds each read of a Watch loop.
	ReadTimeout time.Duration
	// DB carries the coordination (sessions, leader, records, intents);
	// Data the service's fenced data and the history, so that a burst of
	// data traffic never makes a lease renewal wait for a connection. They
	// may be one.
	DB, Data *sql.DB
	Dialect  Dialect
	// Listen, if set, opens the wake source of one Watch: it returns when
	// a change may have been committed. Nil: Watch polls.
	Listen func(ctx context.Context) Waker
}

// Waker is a Watch loop's wake source between reads (PostgreSQL's
// LISTEN).
type Waker interface {
	// Wait returns when a change after rev (the cluster's change counter
	// as last read) may have been committed, after d at the latest, or
	// when ctx ends.
	Wait(ctx context.Context, d time.Duration, rev int64)
	Close()
}

// Pool sizes of each *sql.DB: the most connections, and the most kept idle.
const (
	MaxConns  = 8
	IdleConns = 4
)

// Store is ha.Store on a SQL database, over a Dialect.
type Store struct {
	o Options
	d Dialect
	t Tables
	c Columns

	mu  sync.Mutex
	sid int64         // current session, 0 when none
	ttl time.Duration // of the session, as stored
}

// Open migrates the schema and registers the cluster. The Store owns
// o.DB and o.Data from then on, and closes them in Close; Open closes
// them if it fails.
func Open(ctx context.Context, o Options) (*Store, error) {
	s := &Store{o: o, d: o.Dialect, t: TableNames(o.Prefix), c: o.Dialect.Columns()}
	for _, db := range s.dbs() {
		db.SetMaxOpenConns(MaxConns)
		db.SetMaxIdleConns(IdleConns)
	}
	if err := s.migrate(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	return s, nil
}

func (s *Store) dbs() []*sql.DB {
	if s.o.Data == nil || s.o.Data == s.o.DB {
		return []*sql.DB{s.o.DB}
	}
	return []*sql.DB{s.o.DB, s.o.Data}
}

func (s *Store) data() *sql.DB {
	if s.o.Data == nil {
		return s.o.DB
	}
	return s.o.Data
}

func (s *Store) closeDBs() {
	for _, db := range s.dbs() {
		_ = db.Close()
	}
}

// q rebinds a query for the database.
func (s *Store) q(query string) string { return s.d.Rebind(query) }

// SchemaVersion is the schema version this code migrates to.
func (s *Store) SchemaVersion() int {
	_, v := s.d.Schema()
	return len(v)
}

// migrate applies the schema versions the database lacks, in order, each
// once, under the dialect's migration lock, so agents that start together
// do not race; then it registers the cluster's rows.
func (s *Store) migrate(ctx context.Context) error {
	table, versions := s.d.Schema()
	err := s.d.Exclusive(ctx, s.o.DB, s.t.Migrations, func(q Querier) error {
		if _, err := q.ExecContext(ctx, table); err != nil {
			return err
		}
		var have int
		if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+s.t.Migrations).Scan(&have); err != nil {
			return err
		}
		if have > len(versions) {
			return fmt.Errorf("the database has schema version %d, newer than this haven knows (%d); upgrade haven", have, len(versions))
		}
		for v := have + 1; v <= len(versions); v++ {
			for _, stmt := range versions[v-1] {
				if _, err := q.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("schema version %d: %w", v, err)
				}
			}
			if _, err := q.ExecContext(ctx, s.q(`INSERT INTO `+s.t.Migrations+` (version, applied_at) VALUES (?, `+s.d.Now()+`)`), v); err != nil {
				return err
			}
		}
		for _, table := range []string{s.t.Clusters, s.t.Leader} {
			if _, err := s.insertNew(ctx, q, `INSERT INTO `+table+` (cluster) VALUES (?)`, s.o.Cluster); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate the haven tables: %w", err)
	}
	return nil
}

// insertNew runs an INSERT of a row that may exist already, and reports
// whether it inserted it; a duplicate key changes nothing.
func (s *Store) insertNew(ctx context.Context, q Querier, query string, args ...any) (bool, error) {
	res, err := q.ExecContext(ctx, s.q(query+s.d.IfAbsent()), args...)
	if s.d.Duplicate(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (s *Store) session() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sid
}

// inTx runs f in a READ COMMITTED transaction on db: each statement sees
// every commit made before it, as the rules need.
func inTx(ctx context.Context, db *sql.DB, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// changed bumps the cluster's rev and notifies watchers, when tx commits.
func (s *Store) changed(ctx context.Context, tx *sql.Tx) error {
	return s.d.Changed(ctx, tx, s.o.Cluster)
}

// in returns "(?, ?, ...)" for ids and the arguments.
func in(ids []int64) (string, []any) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + ")", args
}

// dropSessions deletes sessions ids with what is bound to them: their node
// records and their hold on the leader row.
func (s *Store) dropSessions(ctx context.Context, tx *sql.Tx, ids []int64) error {
	list, args := in(ids)
	for _, q := range []string{
		`DELETE FROM ` + s.t.Sessions + ` WHERE id IN ` + list,
		`DELETE FROM ` + s.t.Nodes + ` WHERE session_id IN ` + list,
		`UPDATE ` + s.t.Leader + ` SET node = NULL, session_id = NULL WHERE session_id IN ` + list,
	} {
		if _, err := tx.ExecContext(ctx, s.q(q), args...); err != nil {
			return err
		}
	}
	return s.changed(ctx, tx)
}

// ttlExpr is the session's ttl column in microseconds, as SQL.
func (s *Store) ttlExpr() string {
	if s.c.TTLUnit == time.Microsecond {
		return s.c.TTL
	}
	return fmt.Sprintf("%s * %d", s.c.TTL, s.c.TTLUnit/time.Microsecond)
}

// NewSession creates a session expiring ttl after the database processes it,
// and drops the previous one with everything bound to it.
func (s *Store) NewSession(ctx context.Context, ttl time.Duration) (time.Duration, error) {
	n := int64(ttl / s.c.TTLUnit)
	if n <= 0 {
		return 0, fmt.Errorf("session ttl %s is too short", ttl)
	}
	granted := time.Duration(n) * s.c.TTLUnit
	old := s.session()
	var id int64
	err := inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		var err error
		id, err = s.d.Insert(ctx, tx, s.q(`INSERT INTO `+s.t.Sessions+` (cluster, node, `+s.c.TTL+`, created_at, expires_at)
			VALUES (?, ?, ?, `+s.d.Now()+`, `+s.d.After("?")+`)`), s.o.Cluster, s.o.Node, n, granted.Microseconds())
		if err != nil || old == 0 {
			return err
		}
		return s.dropSessions(ctx, tx, []int64{old})
	})
	if err != nil {
		return 0, fmt.Errorf("create session: %w", err)
	}
	s.mu.Lock()
	s.sid, s.ttl = id, granted
	s.mu.Unlock()
	return granted, nil
}

// Renew extends the session to expire ttl after the database processes the
// request, which is after the caller read its clock: the timing contract.
// An expired session cannot be renewed, even if nobody has deleted it yet.
func (s *Store) Renew(ctx context.Context) (time.Duration, error) {
	s.mu.Lock()
	id, ttl := s.sid, s.ttl
	s.mu.Unlock()
	if id == 0 {
		return 0, ha.ErrSessionLost
	}
	res, err := s.o.DB.ExecContext(ctx, s.q(`UPDATE `+s.t.Sessions+` SET expires_at = `+s.d.After(s.ttlExpr())+`
		WHERE id = ? AND expires_at > `+s.d.Now()), id)
	if err != nil {
		s.dropIfBroken(err)
		return 0, fmt.Errorf("renew session: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, ha.ErrSessionLost
	}
	return ttl, nil
}

// dropIfBroken closes every idle connection when err says the server went
// away (a restart, a cut): each would otherwise fail once more before the
// pool drops it, one renewal after the other, and the active could lose
// its lease to dead connections after a restart shorter than the lease.
// The next call dials afresh. Not on a timeout (a slow, loaded server):
// that already closes its one connection, and dropping them all then
// would only add load.
func (s *Store) dropIfBroken(err error) {
	if !s.d.Broken(err) {
		return
	}
	for _, db := range s.dbs() {
		db.SetMaxIdleConns(0)
		db.SetMaxIdleConns(IdleConns)
	}
}

// Campaign takes the leader row if it is vacant or its session has expired,
// in one transaction; the epoch is the next value of the epoch counter,
// drawn in the same transaction.
func (s *Store) Campaign(ctx context.Context, node string) (ha.Epoch, error) {
	id := s.session()
	if id == 0 {
		return 0, ha.ErrSessionLost
	}
	var epoch int64
	err := inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		// Lock the row first; the holder's liveness is read by the next
		// statements, which (read committed) see every commit before the lock.
		var holder, held sql.NullInt64
		var holderNode sql.NullString
		if err := tx.QueryRowContext(ctx, s.q(`SELECT session_id, node, epoch FROM `+s.t.Leader+` WHERE cluster = ? FOR UPDATE`),
			s.o.Cluster).Scan(&holder, &holderNode, &held); err != nil {
			return err
		}
		// Both sessions' liveness in one statement (NULL: no such session).
		holderID := int64(0)
		if holder.Valid {
			holderID = holder.Int64
		}
		var mine, holderLive sql.NullBool
		live := `(SELECT expires_at > ` + s.d.Now() + ` FROM ` + s.t.Sessions + ` WHERE id = ?)`
		if err := tx.QueryRowContext(ctx, s.q(`SELECT `+live+`, `+live), id, holderID).Scan(&mine, &holderLive); err != nil {
			return err
		}
		if !mine.Valid || !mine.Bool {
			return ha.ErrSessionLost
		}
		if holder.Valid && holderLive.Valid && holderLive.Bool {
			if holder.Int64 == id && holderNode.Valid && holderNode.String == node && held.Valid {
				// Ours already: a campaign whose answer was lost, repeated.
				epoch = held.Int64
				return nil
			}
			return ha.ErrTaken
		}
		var err error
		if epoch, err = s.d.Next(ctx, tx, EpochCounter); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE `+s.t.Leader+` SET node = ?, session_id = ?, epoch = ? WHERE cluster = ?`),
			node, id, epoch, s.o.Cluster); err != nil {
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
	err := inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE `+s.t.Leader+` SET node = NULL, session_id = NULL
			WHERE cluster = ? AND node = ? AND epoch = ?`), s.o.Cluster, node, int64(epoch))
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
	err = inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO `+s.t.Nodes+` (cluster, name, session_id, status, updated_at)
			SELECT ?, ?, id, ?, `+s.d.Now()+` FROM `+s.t.Sessions+` WHERE id = ? AND expires_at > `+s.d.Now()+
			s.d.Upsert([]string{"cluster", "name"}, []string{"session_id", "status", "updated_at"})),
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

// Kinds of the rows of a snapshot's read (readQuery).
const (
	rowCluster = iota
	rowNode
	rowMaintenance
	rowProps
	rowSwitchover
)

// readQuery reads a whole snapshot in one statement, one round trip: a
// row of each kind above, with the columns kind, name, body, expires_at,
// rev, epoch, now and expired (the cluster's row: the database's clock,
// and how many of its sessions have expired).
func (s *Store) readQuery() string {
	now := s.d.Now()
	return s.q(`SELECT ` + fmt.Sprint(rowCluster) + ` AS kind, l.node AS name, NULL AS body, s.expires_at, c.rev, l.epoch, ` + now + ` AS now,
			(SELECT COUNT(*) FROM ` + s.t.Sessions + ` x WHERE x.cluster = c.cluster AND x.expires_at <= ` + now + `) AS expired
		FROM ` + s.t.Clusters + ` c JOIN ` + s.t.Leader + ` l ON l.cluster = c.cluster
		LEFT JOIN ` + s.t.Sessions + ` s ON s.id = l.session_id
		WHERE c.cluster = ?
	UNION ALL SELECT ` + fmt.Sprint(rowNode) + `, n.name, n.status, s.expires_at, 0, 0, NULL, 0
		FROM ` + s.t.Nodes + ` n JOIN ` + s.t.Sessions + ` s ON s.id = n.session_id
		WHERE n.cluster = ? AND s.expires_at > ` + now + `
	UNION ALL SELECT ` + fmt.Sprint(rowMaintenance) + `, node, NULL, NULL, 0, 0, NULL, 0 FROM ` + s.t.Maintenance + ` WHERE cluster = ?
	UNION ALL SELECT ` + fmt.Sprint(rowProps) + `, node, props, NULL, 0, 0, NULL, 0 FROM ` + s.t.Props + ` WHERE cluster = ?
	UNION ALL SELECT ` + fmt.Sprint(rowSwitchover) + `, NULL, body, expires_at, 0, 0, NULL, 0 FROM ` + s.t.Switchover + `
		WHERE cluster = ? AND expires_at > ` + now)
}

// snapRow is one row of readQuery.
type snapRow struct {
	kind       int
	name       sql.NullString
	body       []byte
	at         sql.NullTime
	rev, epoch int64
	now        sql.NullTime
	expired    int
}

// read returns a snapshot, in one statement (readQuery), cleaning up
// expired sessions first if it sees any; wake is how long until the
// earliest live session in it, or its pending switchover, expires (0 if
// none).
func (s *Store) read(ctx context.Context) (ha.Snapshot, time.Duration, error) {
	query := s.readQuery()
	c := s.o.Cluster
	for attempt := 0; ; attempt++ {
		var rows []snapRow
		var r snapRow
		err := s.each(ctx, query, []any{c, c, c, c, c}, []any{&r.kind, &r.name, &r.body, &r.at, &r.rev, &r.epoch, &r.now, &r.expired}, func() {
			rows = append(rows, r)
		})
		if err != nil {
			return ha.Snapshot{}, 0, err
		}
		snap, wake, expired, err := s.decode(rows)
		if err != nil {
			return ha.Snapshot{}, 0, err
		}
		if expired > 0 && attempt == 0 {
			if err := s.cleanup(ctx); err != nil {
				return ha.Snapshot{}, 0, err
			}
			continue
		}
		return snap, wake, nil
	}
}

// decode turns readQuery's rows into a snapshot (see read).
func (s *Store) decode(rows []snapRow) (snap ha.Snapshot, wake time.Duration, expired int, err error) {
	snap.Nodes = map[string]ha.NodeStatus{}
	var now time.Time
	found := false
	for _, r := range rows {
		if r.kind == rowCluster {
			now, snap.Rev, expired, found = r.now.Time, r.rev, r.expired, true
			if r.name.Valid && r.at.Valid && r.at.Time.After(now) {
				snap.Leader = ha.Leader{Node: r.name.String, Epoch: ha.Epoch(r.epoch)}
			}
		}
	}
	if !found {
		return snap, 0, 0, fmt.Errorf("cluster %q has no rows in %s", s.o.Cluster, s.t.Clusters)
	}
	// The statement may read the clock more than once: an expiry that
	// looks already past is a reason to read again soon.
	soonest := func(at time.Time) {
		d := max(at.Sub(now), time.Millisecond)
		if wake == 0 || d < wake {
			wake = d
		}
	}
	for _, r := range rows {
		switch r.kind {
		case rowCluster:
			if !snap.Leader.None() {
				soonest(r.at.Time)
			}
		case rowNode:
			SetNode(&snap, r.name.String, r.body)
			soonest(r.at.Time)
		case rowMaintenance:
			Maintain(&snap, r.name.String)
		case rowProps:
			SetProps(&snap, r.name.String, r.body)
		case rowSwitchover:
			// A switchover is shown until it expires, and the watcher
			// re-reads then, so that it is seen to go (etcd deletes it
			// with its lease).
			SetSwitchover(&snap, r.body)
			soonest(r.at.Time)
		}
	}
	return snap, wake, expired, nil
}

// each runs query and calls f after scanning each row into dest.
func (s *Store) each(ctx context.Context, query string, args, dest []any, f func()) error {
	rows, err := s.o.DB.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		f()
	}
	return rows.Err()
}

// cleanup deletes the cluster's expired sessions and what is bound to
// them. An expired session never lives again (Renew refuses it), so
// deleting what was read expired is safe.
func (s *Store) cleanup(ctx context.Context) error {
	return inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id FROM `+s.t.Sessions+` WHERE cluster = ? AND expires_at <= `+s.d.Now()+` FOR UPDATE`), s.o.Cluster)
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
		if err := rows.Err(); err != nil || len(ids) == 0 {
			return err
		}
		return s.dropSessions(ctx, tx, ids)
	})
}

// Watch streams snapshots: at start, whenever the wake source says a
// change was committed, when a live session or the switchover is due to
// expire, and every poll interval; it sends only those that show
// something new.
func (s *Store) Watch(ctx context.Context) <-chan ha.Snapshot {
	out := make(chan ha.Snapshot, 1)
	go func() {
		defer close(out)
		var wk Waker
		if s.o.Listen != nil {
			// Before the first read: a change committed after it wakes us.
			wk = s.o.Listen(ctx)
			defer wk.Close()
		}
		var w Watcher
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, s.o.ReadTimeout)
			snap, wake, err := s.read(rctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.dropIfBroken(err)
				if !w.Behind(ctx, out) {
					return
				}
			}
			wait, rev := s.o.PollInterval, int64(-1)
			if err == nil {
				if !w.Send(ctx, out, snap) {
					return
				}
				wait, rev = NextRead(wait, wake), snap.Rev
			}
			if wk == nil {
				Sleep(ctx, wait)
			} else {
				wk.Wait(ctx, wait, rev)
			}
		}
	}()
	return out
}

// Close drops the session (best effort) and closes the connections.
func (s *Store) Close() error {
	if id := s.session(); id != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = inTx(ctx, s.o.DB, func(tx *sql.Tx) error { return s.dropSessions(ctx, tx, []int64{id}) })
		cancel()
		s.mu.Lock()
		s.sid = 0
		s.mu.Unlock()
	}
	s.closeDBs()
	return nil
}

// MaxEpoch returns the epoch counter: no epoch issued so far exceeds it.
func (s *Store) MaxEpoch(ctx context.Context) (ha.Epoch, error) {
	v, err := s.d.Current(ctx, s.o.DB, EpochCounter)
	if err != nil {
		return 0, fmt.Errorf("read the epoch counter: %w", err)
	}
	return ha.Epoch(v), nil
}

// RaiseEpoch makes every future epoch greater than e (it never lowers the counter).
func (s *Store) RaiseEpoch(ctx context.Context, e ha.Epoch) error {
	if err := s.d.Raise(ctx, s.o.DB, EpochCounter, int64(e)); err != nil {
		return fmt.Errorf("raise the epoch counter to %d: %w", e, err)
	}
	return nil
}

// KeepRecords stores node records as history, bound to no session: they
// are not shown as live nodes, and a node's first publish replaces its own.
func (s *Store) KeepRecords(ctx context.Context, recs []ha.NodeStatus) error {
	return inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		for _, st := range recs {
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if _, err := s.insertNew(ctx, tx, `INSERT INTO `+s.t.Nodes+` (cluster, name, session_id, status, updated_at)
				VALUES (?, ?, NULL, ?, `+s.d.Now()+`)`, s.o.Cluster, st.Name, string(b)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Records returns every node record of the cluster, live or kept as history.
func (s *Store) Records(ctx context.Context) ([]ha.NodeStatus, error) {
	var out []ha.NodeStatus
	var b []byte
	var bad error
	err := s.each(ctx, s.q(`SELECT status FROM `+s.t.Nodes+` WHERE cluster = ? ORDER BY name`), []any{s.o.Cluster}, []any{&b}, func() {
		var st ha.NodeStatus
		if err := json.Unmarshal(b, &st); err != nil {
			bad = err
			return
		}
		out = append(out, st)
	})
	if err == nil {
		err = bad
	}
	return out, err
}

// DB exposes the coordination database handle (for tools and tests).
func (s *Store) DB() *sql.DB { return s.o.DB }

var _ ha.Store = (*Store)(nil)
