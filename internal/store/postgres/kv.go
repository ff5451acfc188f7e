package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/haven-ha/haven/internal/ha"
)

// Fenced data: every read or write of the service's data is one
// transaction that first locks the leader row (FOR SHARE) and checks that
// node holds it at epoch with a session that has not expired by the
// database's clock. A campaign needs that row FOR UPDATE, so it cannot take
// the role between the check and the commit: the write lands before any
// later epoch exists, or not at all. A write may carry an idempotency id
// (kept in data_ids with the write's revision): a retry of a write that
// committed is answered as that write, and applied only once.

// fence locks the leader row and checks node holds it at epoch.
func (s *Store) fence(ctx context.Context, tx pgx.Tx, node string, epoch ha.Epoch) error {
	var live bool
	err := tx.QueryRow(ctx, `SELECT s.expires_at > clock_timestamp()
		FROM `+s.t.leader+` l JOIN `+s.t.sessions+` s ON s.id = l.session_id
		WHERE l.cluster = $1 AND l.node = $2 AND l.epoch = $3 FOR SHARE OF l`, s.o.Cluster, node, int64(epoch)).Scan(&live)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !live) {
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
	err = pgx.BeginFunc(ctx, s.data, func(tx pgx.Tx) error {
		rev, repeat = 0, false
		if id != "" {
			// As on etcd, a committed id answers even after the role moved.
			err := tx.QueryRow(ctx, `SELECT rev FROM `+s.t.dataIDs+` WHERE cluster = $1 AND id = $2`, s.o.Cluster, id).Scan(&rev)
			if err == nil {
				repeat = true
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		if err := s.fence(ctx, tx, node, epoch); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT nextval('`+s.t.dataRev+`')`).Scan(&rev); err != nil {
			return err
		}
		if id != "" {
			// A concurrent write with this id makes the insert wait for it;
			// if it committed, this one is its repeat.
			tag, err := tx.Exec(ctx, `INSERT INTO `+s.t.dataIDs+` (cluster, id, key, rev) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
				s.o.Cluster, id, key, rev)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				repeat = true
				return tx.QueryRow(ctx, `SELECT rev FROM `+s.t.dataIDs+` WHERE cluster = $1 AND id = $2`, s.o.Cluster, id).Scan(&rev)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+s.t.data+` (cluster, key, value, rev) VALUES ($1, $2, $3, $4)
			ON CONFLICT (cluster, key) DO UPDATE SET value = excluded.value, rev = excluded.rev`, s.o.Cluster, key, value, rev)
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
	err = pgx.BeginFunc(ctx, s.data, func(tx pgx.Tx) error {
		if err := s.fence(ctx, tx, node, epoch); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT last_value FROM `+s.t.dataRev).Scan(&rev); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT value FROM `+s.t.data+` WHERE cluster = $1 AND key = $2`, s.o.Cluster, key).Scan(&value)
		found = err == nil
		if errors.Is(err, pgx.ErrNoRows) {
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
