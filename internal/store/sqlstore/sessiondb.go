package sqlstore

import (
	"context"
	"database/sql"

	"github.com/haven-ha/haven/internal/ha"
)

// What a session store kept in this database needs (package sessions'
// SQLDB): the handle of the data connections, the fence, and where its
// tables go.

// SessionDB returns the handle of the data connections (the Store closes
// it) and the database's kind, "postgres" or "mysql".
func (s *Store) SessionDB() (*sql.DB, string) { return s.data(), s.d.Name() }

// SessionScope returns the table prefix and the cluster.
func (s *Store) SessionScope() (prefix, cluster string) { return s.o.Prefix, s.o.Cluster }

// SessionFence is the fence of fenced data (kv.go), in tx: it share-locks
// the leader row until tx ends and returns ha.ErrNotLeader unless node
// holds the role at epoch with a live session.
func (s *Store) SessionFence(ctx context.Context, tx *sql.Tx, node string, epoch ha.Epoch) error {
	return s.fence(ctx, tx, node, epoch)
}
