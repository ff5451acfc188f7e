package postgres

import (
	"context"
	"testing"

	"github.com/haven-ha/haven/internal/dbserver"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// TestVerifyFull: haven's PostgreSQL store connects with
// sslmode=verify-full to a real server whose certificate a throwaway CA
// signed, and refuses a server it cannot verify: another CA, or a
// certificate for another host name.
func TestVerifyFull(t *testing.T) {
	storetest.RunTLS(t, storetest.TLSBackend[*Store]{
		Start: dbserver.StartPostgresTLS,
		Open: func(ctx context.Context, srv *dbserver.Server, caFile string) (*Store, error) {
			dsn := "postgres://haven@" + srv.Addr + "/postgres?sslmode=verify-full&sslrootcert=" + caFile + "&connect_timeout=5"
			return Open(ctx, Options{Cluster: "tls", Node: "n1", DSN: dsn})
		},
		How: "verify-full",
	})
}
