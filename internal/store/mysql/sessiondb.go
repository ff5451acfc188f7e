package mysql

import (
	"context"
	"database/sql"

	"github.com/haven-ha/haven/internal/ha"
)

// What package sessions needs to keep the session store in this database
// (sessions.SQLDB): the SQL is in sessions.SQLData, written once for both
// SQL stores.

// SessionDB returns the store's database and the dialect.
func (s *Store) SessionDB() (*sql.DB, string) { return s.db, "mysql" }

// SessionScope returns the table prefix and the cluster.
func (s *Store) SessionScope() (prefix, cluster string) { return s.o.TablePrefix, s.o.Cluster }

// SessionFence is fence (kv.go).
func (s *Store) SessionFence(ctx context.Context, tx *sql.Tx, node string, epoch ha.Epoch) error {
	return s.fence(ctx, tx, node, epoch)
}
