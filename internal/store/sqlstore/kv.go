package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/haven-ha/haven/internal/ha"
)

// Fenced data (see the package doc for why it is safe): every read or
// write of the service's data is one transaction that first share-locks
// the leader row and checks that node holds it at epoch with a session
// that has not expired by the database's clock.

// fence locks the leader row and checks node holds it at epoch. Only the
// leader row is locked, as Campaign locks it: the session's expiry is a
// plain read (read committed: the latest commit).
func (s *Store) fence(ctx context.Context, tx *sql.Tx, node string, epoch ha.Epoch) error {
	var sid sql.NullInt64
	err := tx.QueryRowContext(ctx, s.q(`SELECT session_id FROM `+s.t.Leader+` WHERE cluster = ? AND node = ? AND epoch = ?`+s.d.ShareLock("")),
		s.o.Cluster, node, int64(epoch)).Scan(&sid)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !sid.Valid) {
		return ha.ErrNotLeader
	}
	if err != nil {
		return err
	}
	var live bool
	err = tx.QueryRowContext(ctx, s.q(`SELECT expires_at > `+s.d.Now()+` FROM `+s.t.Sessions+` WHERE id = ?`), sid.Int64).Scan(&live)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !live) {
		return ha.ErrNotLeader
	}
	return err
}

// FencedPut writes value at key if node holds the active role at epoch. It
// returns the revision at which the value was committed, and whether this
// was a repeat of a write (same id) that had committed already. A write
// refused by the fence returns ha.ErrNotLeader and changed nothing; any
// other error leaves the outcome unknown.
func (s *Store) FencedPut(ctx context.Context, node string, epoch ha.Epoch, key, value, id string) (rev int64, repeat bool, err error) {
	k := s.c.Key
	err = inTx(ctx, s.data(), func(tx *sql.Tx) error {
		rev, repeat = 0, false
		if id != "" {
			// As on etcd, a committed id answers even after the role moved.
			err := tx.QueryRowContext(ctx, s.q(`SELECT rev FROM `+s.t.DataIDs+` WHERE cluster = ? AND id = ?`), s.o.Cluster, id).Scan(&rev)
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
		var err error
		if rev, err = s.d.Next(ctx, tx, DataRevCounter); err != nil {
			return err
		}
		if id != "" {
			// A concurrent write with this id makes the insert wait for it;
			// if it committed, this one is its repeat.
			ok, err := s.insertNew(ctx, tx, `INSERT INTO `+s.t.DataIDs+` (cluster, id, `+k+`, rev, created_at) VALUES (?, ?, ?, ?, `+s.d.Now()+`)`,
				s.o.Cluster, id, key, rev)
			if err != nil {
				return err
			}
			if !ok {
				repeat = true
				return tx.QueryRowContext(ctx, s.q(`SELECT rev FROM `+s.t.DataIDs+` WHERE cluster = ? AND id = ?`), s.o.Cluster, id).Scan(&rev)
			}
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO `+s.t.Data+` (cluster, `+k+`, value, rev) VALUES (?, ?, ?, ?)`+
			s.d.Upsert([]string{"cluster", k}, []string{"value", "rev"})), s.o.Cluster, key, value, rev)
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
	err = inTx(ctx, s.data(), func(tx *sql.Tx) error {
		if err := s.fence(ctx, tx, node, epoch); err != nil {
			return err
		}
		var err error
		if rev, err = s.d.Current(ctx, tx, DataRevCounter); err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, s.q(`SELECT value FROM `+s.t.Data+` WHERE cluster = ? AND `+s.c.Key+` = ?`), s.o.Cluster, key).Scan(&value)
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
