package postgres

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/haven-ha/haven/internal/ha"
)

// What package sessions needs to keep the session store in this database
// (sessions.SQLDB): the SQL is in sessions.SQLData, written once for both
// SQL stores.

// SessionDB returns a new database/sql handle on the data pool (closing it
// leaves the pool open; the session store asks once) and the dialect.
func (s *Store) SessionDB() (*sql.DB, string) {
	return stdlib.OpenDBFromPool(s.data), "postgres"
}

// SessionScope returns the table prefix and the cluster.
func (s *Store) SessionScope() (prefix, cluster string) { return s.o.TablePrefix, s.o.Cluster }

// SessionFence is fence (kv.go) on a database/sql transaction.
func (s *Store) SessionFence(ctx context.Context, tx *sql.Tx, node string, epoch ha.Epoch) error {
	var live bool
	err := tx.QueryRowContext(ctx, `SELECT s.expires_at > clock_timestamp()
		FROM `+s.t.leader+` l JOIN `+s.t.sessions+` s ON s.id = l.session_id
		WHERE l.cluster = $1 AND l.node = $2 AND l.epoch = $3 FOR SHARE OF l`, s.o.Cluster, node, int64(epoch)).Scan(&live)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !live) {
		return ha.ErrNotLeader
	}
	return err
}
