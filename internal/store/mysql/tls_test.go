package mysql

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/dbserver"
)

// TestVerifiedTLS: the MySQL store connects over TLS to a real MariaDB
// whose certificate a throwaway CA signed, and refuses a server it cannot
// verify: another CA, or a certificate for another host name.
func TestVerifiedTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("haven test db CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := ca.WriteFiles(caFile, filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(dir, "other.crt")
	if err := other.WriteFiles(otherFile, filepath.Join(dir, "other.key")); err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "db.crt"), filepath.Join(dir, "db.key")
	if _, err := ca.IssueFiles(crt, key, certs.IssueOptions{Name: "db", Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	srv, err := dbserver.StartMariaDBTLS(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	open := func(dsn, caFile string) (*Store, error) {
		tc, err := certs.ClientTLS(certs.Files{CA: caFile})
		if err != nil {
			t.Fatal(err)
		}
		return Open(ctx, Options{Cluster: "tls", Node: "n1", DSN: dsn, TLS: tc})
	}
	s, err := open(srv.DSN, caFile)
	if err != nil {
		t.Fatalf("TLS with the server's CA: %v", err)
	}
	if _, err := s.MaxEpoch(ctx); err != nil {
		t.Fatalf("a query over TLS: %v", err)
	}
	_ = s.Close()
	if s, err := open(srv.DSN, otherFile); err == nil {
		_ = s.Close()
		t.Fatal("TLS accepted a server of another CA")
	}
	// The same CA, a certificate for another host name.
	srv.Stop()
	if _, err := ca.IssueFiles(crt, key, certs.IssueOptions{Name: "db", Hosts: []string{"db.example"}}); err != nil {
		t.Fatal(err)
	}
	srv2, err := dbserver.StartMariaDBTLS(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	if s, err := open(srv2.DSN, caFile); err == nil {
		_ = s.Close()
		t.Fatal("TLS accepted a certificate for another host name")
	}
}
