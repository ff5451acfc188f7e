package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	driver "github.com/go-sql-driver/mysql"

	"github.com/haven-ha/haven/internal/ha"
)

// Fenced data: every read or write of the service's data is one
// transaction that first locks the leader row (LOCK IN SHARE MODE) and
// checks that node holds it at epoch with a session that has not expired by
// the server's clock. A campaign needs that row FOR UPDATE, so it cannot
// take the role between the check and the commit: the write lands before
// any later epoch exists, or not at all. A write may carry an idempotency
// id (kept in data_ids with the write's revision): a retry of a write that
// committed is answered as that write, and applied only once.

// fence locks the leader row and checks node holds it at epoch. Only the
// leader row is locked, in the order Campaign locks: the session's expiry
// is a plain read (READ COMMITTED: the latest commit).
func (s *Store) fence(ctx context.Context, tx *sql.Tx, node string, epoch ha.Epoch) error {
	var sid sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT session_id FROM `+s.t.leader+` WHERE cluster = ? AND node = ? AND epoch = ? LOCK IN SHARE MODE`,
		s.o.Cluster, node, int64(epoch)).Scan(&sid)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !sid.Valid) {
		return ha.ErrNotLeader
	}
	if err != nil {
		return err
	}
	var live bool
	err = tx.QueryRowContext(ctx, `SELECT expires_at > UTC_TIMESTAMP(6) FROM `+s.t.sessions+` WHERE id = ?`, sid.Int64).Scan(&live)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !live) {
		return ha.ErrNotLeader
	}
	return err
}

// duplicate reports whether err is MySQL's duplicate key error, which ends
// the statement but not the transaction.
func duplicate(err error) bool {
	var me *driver.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}

// FencedPut writes value at key if node holds the active role at epoch. It
// returns the revision at which the value was committed, and whether this
// was a repeat of a write (same id) that had committed already. A write
// refused by the fence returns ha.ErrNotLeader and changed nothing; any
// other error leaves the outcome unknown.
func (s *Store) FencedPut(ctx context.Context, node string, epoch ha.Epoch, key, value, id string) (rev int64, repeat bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		rev, repeat = 0, false
		if id != "" {
			// As on etcd, a committed id answers even after the role moved.
			err := tx.QueryRowContext(ctx, `SELECT rev FROM `+s.t.dataIDs+` WHERE cluster = ? AND id = ?`, s.o.Cluster, id).Scan(&rev)
			if err == nil {
				repeat = true
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if err := s.fence(ctx, tx, node, epoch); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE `+s.t.counters+` SET value = LAST_INSERT_ID(value + 1) WHERE name = 'data_rev'`)
		if err != nil {
			return err
		}
		if rev, err = res.LastInsertId(); err != nil {
			return err
		}
		if id != "" {
			// A concurrent write with this id makes the insert wait for it;
			// if it committed, this one is its repeat.
			_, err := tx.ExecContext(ctx, `INSERT INTO `+s.t.dataIDs+` (cluster, id, k, rev, created_at) VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6))`,
				s.o.Cluster, id, key, rev)
			if duplicate(err) {
				repeat = true
				return tx.QueryRowContext(ctx, `SELECT rev FROM `+s.t.dataIDs+` WHERE cluster = ? AND id = ?`, s.o.Cluster, id).Scan(&rev)
			}
			if err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO `+s.t.data+` (cluster, k, value, rev) VALUES (?, ?, ?, ?)
			ON DUPLICATE KEY UPDATE value = VALUES(value), rev = VALUES(rev)`, s.o.Cluster, key, value, rev)
		return err
	})
	switch {
	case errors.Is(err, ha.ErrNotLeader):
		return 0, false, err
	case err != nil:
		return 0, false, fmt.Errorf("fenced write of %s at epoch %d: %w", key, epoch, err)
	}
	return rev, repeat, nil
}

// FencedGet reads key if node holds the active role at epoch: a read that
// a deposed node cannot make. rev is the data revision at the read.
func (s *Store) FencedGet(ctx context.Context, node string, epoch ha.Epoch, key string) (value string, found bool, rev int64, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.fence(ctx, tx, node, epoch); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT value FROM `+s.t.counters+` WHERE name = 'data_rev'`).Scan(&rev); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT value FROM `+s.t.data+` WHERE cluster = ? AND k = ?`, s.o.Cluster, key).Scan(&value)
		found = err == nil
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	switch {
	case errors.Is(err, ha.ErrNotLeader):
		return "", false, 0, err
	case err != nil:
		return "", false, 0, fmt.Errorf("fenced read of %s at epoch %d: %w", key, epoch, err)
	}
	return value, found, rev, nil
}
