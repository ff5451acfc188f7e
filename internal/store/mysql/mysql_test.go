package mysql

import (
	"context"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/store/storetest"
)

func TestMariaDB(t *testing.T) {
	srv := storetest.StartMariaDB(t)
	storetest.RunSQL(t, storetest.SQLBackend[*Store]{
		Server: srv,
		Open: func(ctx context.Context, dsn, cluster, node, prefix string) (*Store, error) {
			return Open(ctx, Options{Cluster: cluster, Node: node, DSN: dsn, TablePrefix: prefix})
		},
		Migrations: func() (string, error) {
			return srv.SQL("SELECT CONCAT(COUNT(*), '|', MAX(version)) FROM haven.mig_schema_migrations")
		},
		WatchDelay:      600 * time.Millisecond,
		PropsWatchDelay: time.Second,
	})
}
