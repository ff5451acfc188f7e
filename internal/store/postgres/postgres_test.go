package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/store/storetest"
)

func TestPostgres(t *testing.T) {
	srv := storetest.StartPostgres(t)
	storetest.RunSQL(t, storetest.SQLBackend[*Store]{
		Server: srv,
		Open: func(ctx context.Context, dsn, cluster, node, prefix string) (*Store, error) {
			return Open(ctx, Options{Cluster: cluster, Node: node, DSN: dsn, TablePrefix: prefix})
		},
		Migrations: func() (string, error) {
			return srv.Psql("SELECT count(*), max(version) FROM mig_schema_migrations")
		},
		WatchDelay:      500 * time.Millisecond,
		PropsWatchDelay: 500 * time.Millisecond,
	})
}
