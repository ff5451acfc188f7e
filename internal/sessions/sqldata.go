package sessions

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// SQLDB is what the session store needs from a SQL store package
// (PostgreSQL, MariaDB/MySQL) to keep its data in that database: a
// database/sql handle and the store's fence. The algorithm (SQLData) is
// written once, here; a store package adds a few lines in a file of its own.
type SQLDB interface {
	// SessionDB returns a handle on the store's database and its dialect,
	// "postgres" or "mysql".
	SessionDB() (*sql.DB, string)
	// SessionFence runs first in every fenced transaction: it locks the
	// leader row against a campaign until tx ends and returns
	// ha.ErrNotLeader unless node holds the active role at epoch with a
	// session that has not expired by the database's clock.
	SessionFence(ctx context.Context, tx *sql.Tx, node string, epoch ha.Epoch) error
	// SessionScope returns the store's table prefix and cluster name.
	SessionScope() (prefix, cluster string)
}

// SQLData keeps the session store in a SQL database (ha.SessionData).
//
// Two tables beside the store's own: <prefix>session_rev holds one row per
// cluster with its revision (every commit adds one, under that row's lock,
// so revisions are in commit order) and purged (tombstones below it are
// gone); <prefix>session_keys holds one row per key, found by the SHA-256
// of the key, with its value, absolute expiry, the revision of its last
// change and whether that change was a deletion (a tombstone, so that
// standbys polling for rows above their revision learn of deletions).
// A fenced commit runs the store's fence first, in the same transaction:
// a deposed active's batch commits before any later epoch exists, or not
// at all. Standbys poll (WatchInterval) for rows above their revision.
type SQLData struct {
	src     SQLDB
	db      *sql.DB
	dialect string
	cluster string
	keys    string // table names
	revs    string
	poll    time.Duration
	commits sync.Mutex // counts commits for the tombstone purge
	n       int
	keep    int64         // tombstones stay this many revisions (tombstoneRevs)
	every   int           // the purge runs once in this many commits (purgeEvery)
	kick    chan struct{} // a commit on this node: watchers look now
}

// SQLOptions configure SQLData.
type SQLOptions struct {
	// WatchInterval is how often a watcher looks for new changes; 0: 100ms.
	WatchInterval time.Duration
}

// Tombstones stay for tombstoneRevs revisions, and are purged once in
// purgeEvery commits; a watcher further behind than that loads again.
const (
	tombstoneRevs = 10000
	purgeEvery    = 100
)

// NewSQLData creates the session tables if they are missing and returns
// the store.
func NewSQLData(ctx context.Context, src SQLDB, o SQLOptions) (*SQLData, error) {
	db, dialect := src.SessionDB()
	prefix, cluster := src.SessionScope()
	if dialect != "postgres" && dialect != "mysql" {
		return nil, fmt.Errorf("sessions: unknown SQL dialect %q", dialect)
	}
	if o.WatchInterval <= 0 {
		o.WatchInterval = 100 * time.Millisecond
	}
	d := &SQLData{src: src, db: db, dialect: dialect, cluster: cluster, keys: prefix + "session_keys", revs: prefix + "session_rev",
		poll: o.WatchInterval, kick: make(chan struct{}, 1), keep: tombstoneRevs, every: purgeEvery}
	var err error
	for try := 0; try < 5; try++ {
		// Agents starting together race to create the tables; PostgreSQL
		// may refuse the loser of CREATE ... IF NOT EXISTS. Again is fine.
		if err = d.create(ctx); err == nil {
			return d, nil
		}
		select {
		case <-time.After(time.Duration(50*(try+1)) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("sessions: create the session tables %s and %s: %w (the store's database user needs CREATE)", d.keys, d.revs, err)
}

func (d *SQLData) create(ctx context.Context) error {
	var stmts []string
	if d.dialect == "postgres" {
		stmts = []string{
			`CREATE TABLE IF NOT EXISTS ` + d.revs + ` (cluster text PRIMARY KEY, rev bigint NOT NULL, purged bigint NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS ` + d.keys + ` (cluster text NOT NULL, kh bytea NOT NULL, k bytea NOT NULL, v bytea NOT NULL,
				expire_at bigint NOT NULL, hash boolean NOT NULL, deleted boolean NOT NULL, rev bigint NOT NULL, PRIMARY KEY (cluster, kh))`,
			`CREATE INDEX IF NOT EXISTS ` + d.keys + `_rev ON ` + d.keys + ` (cluster, rev)`,
			`CREATE INDEX IF NOT EXISTS ` + d.keys + `_dead ON ` + d.keys + ` (cluster, rev) WHERE deleted`,
			`INSERT INTO ` + d.revs + ` (cluster, rev, purged) VALUES ($1, 0, 0) ON CONFLICT DO NOTHING`,
		}
	} else {
		stmts = []string{
			`CREATE TABLE IF NOT EXISTS ` + d.revs + ` (cluster VARCHAR(191) PRIMARY KEY, rev BIGINT NOT NULL, purged BIGINT NOT NULL) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS ` + d.keys + ` (cluster VARCHAR(191) NOT NULL, kh BINARY(32) NOT NULL, k LONGBLOB NOT NULL, v LONGBLOB NOT NULL,
				expire_at BIGINT NOT NULL, hash BOOLEAN NOT NULL, deleted BOOLEAN NOT NULL, rev BIGINT NOT NULL,
				PRIMARY KEY (cluster, kh), KEY ` + d.keys + `_rev (cluster, rev), KEY ` + d.keys + `_dead (cluster, deleted, rev)) ENGINE=InnoDB`,
			`INSERT IGNORE INTO ` + d.revs + ` (cluster, rev, purged) VALUES (?, 0, 0)`,
		}
	}
	for i, q := range stmts {
		var args []any
		if i == len(stmts)-1 {
			args = []any{d.cluster}
		}
		if _, err := d.db.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

// q turns ? placeholders into PostgreSQL's $n.
func (d *SQLData) q(query string) string {
	if d.dialect != "postgres" {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func sqlKeyHash(k string) []byte {
	h := sha256.Sum256([]byte(k))
	return h[:]
}

// snapshot runs f in a read-only transaction that sees one committed state.
func (d *SQLData) snapshot(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// write runs f in a read-committed transaction and commits it.
func (d *SQLData) write(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (d *SQLData) revision(ctx context.Context, tx *sql.Tx) (rev, purged int64, err error) {
	err = tx.QueryRowContext(ctx, d.q(`SELECT rev, purged FROM `+d.revs+` WHERE cluster = ?`), d.cluster).Scan(&rev, &purged)
	return rev, purged, err
}

// scan reads rows of (k, v, expire_at, hash, deleted, rev).
func scanRecords(rows *sql.Rows) ([]ha.SessionRecord, error) {
	defer rows.Close()
	var out []ha.SessionRecord
	for rows.Next() {
		var r ha.SessionRecord
		var k []byte
		if err := rows.Scan(&k, &r.Value, &r.ExpireAt, &r.Hash, &r.Deleted, &r.Rev); err != nil {
			return nil, err
		}
		r.Key = string(k)
		if r.Deleted {
			r.Value = nil
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const recordColumns = `k, v, expire_at, hash, deleted, rev`

// LoadSessions reads every record at one committed state.
func (d *SQLData) LoadSessions(ctx context.Context) (recs []ha.SessionRecord, rev int64, err error) {
	err = d.snapshot(ctx, func(tx *sql.Tx) error {
		if rev, _, err = d.revision(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, d.q(`SELECT `+recordColumns+` FROM `+d.keys+` WHERE cluster = ? AND NOT deleted`), d.cluster)
		if err != nil {
			return err
		}
		recs, err = scanRecords(rows)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("load the session store: %w", err)
	}
	return recs, rev, nil
}

var errWatchBehind = errors.New("the watch of the session store fell behind the purge of deleted keys; loading again")

// WatchSessions looks for changes every WatchInterval (and at once after a
// commit on this node) and calls fn with them, until ctx ends or a read
// fails.
func (d *SQLData) WatchSessions(ctx context.Context, rev int64, fn func([]ha.SessionRecord)) error {
	t := time.NewTimer(d.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-d.kick:
		}
		// One statement when nothing changed (the usual case on an idle
		// cluster); the rows in a snapshot with the revision when it did.
		var now int64
		err := d.db.QueryRowContext(ctx, d.q(`SELECT rev FROM `+d.revs+` WHERE cluster = ?`), d.cluster).Scan(&now)
		if err == nil && now == rev {
			t.Reset(d.poll)
			continue
		}
		var recs []ha.SessionRecord
		err = d.snapshot(ctx, func(tx *sql.Tx) error {
			var purged int64
			var err error
			if now, purged, err = d.revision(ctx, tx); err != nil || now == rev {
				return err
			}
			if rev+1 < purged {
				return errWatchBehind
			}
			rows, err := tx.QueryContext(ctx, d.q(`SELECT `+recordColumns+` FROM `+d.keys+` WHERE cluster = ? AND rev > ? ORDER BY rev`), d.cluster, rev)
			if err != nil {
				return err
			}
			recs, err = scanRecords(rows)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch the session store: %w", err)
		}
		if len(recs) > 0 {
			fn(recs)
		}
		rev = max(rev, now)
		t.Reset(d.poll)
	}
}

// next adds one to the cluster's revision (holding its row's lock until
// the transaction ends) and returns it.
func (d *SQLData) next(ctx context.Context, tx *sql.Tx) (int64, error) {
	if d.dialect == "postgres" {
		// One round trip (MariaDB has no UPDATE ... RETURNING).
		var rev int64
		err := tx.QueryRowContext(ctx, `UPDATE `+d.revs+` SET rev = rev + 1 WHERE cluster = $1 RETURNING rev`, d.cluster).Scan(&rev)
		return rev, err
	}
	if _, err := tx.ExecContext(ctx, d.q(`UPDATE `+d.revs+` SET rev = rev + 1 WHERE cluster = ?`), d.cluster); err != nil {
		return 0, err
	}
	rev, _, err := d.revision(ctx, tx)
	return rev, err
}

// put writes recs at rev in one statement, deletions as tombstones.
func (d *SQLData) put(ctx context.Context, tx *sql.Tx, rev int64, recs []ha.SessionRecord) error {
	if len(recs) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO ` + d.keys + ` (cluster, kh, k, v, expire_at, hash, deleted, rev) VALUES `)
	args := make([]any, 0, 8*len(recs))
	for i, r := range recs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?)")
		v := r.Value
		if v == nil || r.Deleted {
			v = []byte{}
		}
		args = append(args, d.cluster, sqlKeyHash(r.Key), []byte(r.Key), v, r.ExpireAt, r.Hash && !r.Deleted, r.Deleted, rev)
	}
	if d.dialect == "postgres" {
		b.WriteString(` ON CONFLICT (cluster, kh) DO UPDATE SET v = excluded.v, expire_at = excluded.expire_at, hash = excluded.hash, deleted = excluded.deleted, rev = excluded.rev`)
	} else {
		b.WriteString(` ON DUPLICATE KEY UPDATE v = VALUES(v), expire_at = VALUES(expire_at), hash = VALUES(hash), deleted = VALUES(deleted), rev = VALUES(rev)`)
	}
	_, err := tx.ExecContext(ctx, d.q(b.String()), args...)
	return err
}

// purge removes old tombstones once in purgeEvery commits.
func (d *SQLData) purge(ctx context.Context, tx *sql.Tx, rev int64) error {
	d.commits.Lock()
	d.n++
	due := d.n%d.every == 0
	d.commits.Unlock()
	if !due || rev <= d.keep {
		return nil
	}
	below := rev - d.keep
	if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM `+d.keys+` WHERE cluster = ? AND deleted AND rev < ?`), d.cluster, below); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, d.q(`UPDATE `+d.revs+` SET purged = ? WHERE cluster = ? AND purged < ?`), below, d.cluster, below)
	return err
}

func (d *SQLData) wakeWatchers() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// CommitSessions writes recs in one transaction, fenced by the store's
// leader row at epoch.
func (d *SQLData) CommitSessions(ctx context.Context, node string, epoch ha.Epoch, recs []ha.SessionRecord) (rev int64, err error) {
	err = d.write(ctx, func(tx *sql.Tx) error {
		if err := d.src.SessionFence(ctx, tx, node, epoch); err != nil {
			return err
		}
		if rev, err = d.next(ctx, tx); err != nil {
			return err
		}
		if err := d.put(ctx, tx, rev, recs); err != nil {
			return err
		}
		return d.purge(ctx, tx, rev)
	})
	switch {
	case errors.Is(err, ha.ErrNotLeader):
		return 0, err
	case err != nil:
		return 0, fmt.Errorf("commit %d session keys at epoch %d: %w", len(recs), epoch, err)
	}
	d.wakeWatchers()
	return rev, nil
}

// CommitSessionsIf writes recs in one transaction if every key of expect
// is still at that revision (0: absent or deleted).
func (d *SQLData) CommitSessionsIf(ctx context.Context, recs []ha.SessionRecord, expect map[string]int64) (rev int64, ok bool, err error) {
	err = d.write(ctx, func(tx *sql.Tx) error {
		// The revision row's lock first: every commit before this one is
		// visible to the reads below (read committed), none can interleave.
		if rev, err = d.next(ctx, tx); err != nil {
			return err
		}
		keys := make([]string, 0, len(expect))
		for k := range expect {
			keys = append(keys, k)
		}
		cur, err := d.get(ctx, tx, keys)
		if err != nil {
			return err
		}
		for _, r := range cur {
			at := r.Rev
			if r.Deleted {
				at = 0
			}
			if at != expect[r.Key] {
				return errConflict
			}
		}
		if len(recs) == 0 {
			return errNoWrite // the compare held; roll the revision back
		}
		return d.put(ctx, tx, rev, recs)
	})
	switch {
	case errors.Is(err, errConflict):
		return rev - 1, false, nil
	case errors.Is(err, errNoWrite):
		return rev - 1, true, nil
	case err != nil:
		return 0, false, fmt.Errorf("commit %d session keys: %w", len(recs), err)
	}
	d.wakeWatchers()
	return rev, true, nil
}

var (
	errConflict = errors.New("a compared key changed")
	errNoWrite  = errors.New("nothing to write")
)

// get reads keys in tx: an absent key comes back Deleted at rev 0.
func (d *SQLData) get(ctx context.Context, tx *sql.Tx, keys []string) ([]ha.SessionRecord, error) {
	found := map[string]ha.SessionRecord{}
	for len(keys) > 0 {
		part := keys[:min(len(keys), 500)]
		keys = keys[len(part):]
		args := []any{d.cluster}
		for _, k := range part {
			args = append(args, sqlKeyHash(k))
		}
		in := strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", ")
		rows, err := tx.QueryContext(ctx, d.q(`SELECT `+recordColumns+` FROM `+d.keys+` WHERE cluster = ? AND kh IN (`+in+`)`), args...)
		if err != nil {
			return nil, err
		}
		recs, err := scanRecords(rows)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			found[r.Key] = r
		}
		for _, k := range part {
			if _, ok := found[k]; !ok {
				found[k] = ha.SessionRecord{Key: k, Deleted: true}
			}
		}
	}
	out := make([]ha.SessionRecord, 0, len(found))
	for _, r := range found {
		out = append(out, r)
	}
	return out, nil
}

// GetSessions reads keys at one committed state; an absent key comes back
// Deleted, at the store's revision (a deleted one at its deletion's).
func (d *SQLData) GetSessions(ctx context.Context, keys []string) ([]ha.SessionRecord, error) {
	var out []ha.SessionRecord
	err := d.snapshot(ctx, func(tx *sql.Tx) error {
		rev, _, err := d.revision(ctx, tx)
		if err != nil {
			return err
		}
		recs, err := d.get(ctx, tx, keys)
		if err != nil {
			return err
		}
		byKey := map[string]ha.SessionRecord{}
		for _, r := range recs {
			if r.Deleted && r.Rev == 0 {
				r.Rev = rev
			}
			byKey[r.Key] = r
		}
		out = make([]ha.SessionRecord, len(keys))
		for i, k := range keys {
			out[i] = byKey[k]
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %d session keys: %w", len(keys), err)
	}
	return out, nil
}

var _ ha.SessionData = (*SQLData)(nil)
