package mysql

import (
	"context"
	"testing"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/dbserver"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// TestVerifiedTLS: the MySQL store connects over TLS to a real MariaDB
// whose certificate a throwaway CA signed, and refuses a server it cannot
// verify: another CA, or a certificate for another host name.
func TestVerifiedTLS(t *testing.T) {
	storetest.RunTLS(t, storetest.TLSBackend[*Store]{
		Start: dbserver.StartMariaDBTLS,
		Open: func(ctx context.Context, srv *dbserver.Server, caFile string) (*Store, error) {
			tc, err := certs.ClientTLS(certs.Files{CA: caFile})
			if err != nil {
				return nil, err
			}
			return Open(ctx, Options{Cluster: "tls", Node: "n1", DSN: srv.DSN, TLS: tc})
		},
		How: "TLS",
	})
}
