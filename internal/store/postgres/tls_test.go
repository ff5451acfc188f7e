package postgres

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/dbserver"
)

// TestVerifyFull: haven's PostgreSQL store connects with
// sslmode=verify-full to a real server whose certificate a throwaway CA
// signed, and refuses a server it cannot verify: another CA, or a
// certificate for another host name.
func TestVerifyFull(t *testing.T) {
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
	srv, err := dbserver.StartPostgresTLS(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dsn := func(mode, root string) string {
		return "postgres://haven@" + srv.Addr + "/postgres?sslmode=" + mode + "&sslrootcert=" + root + "&connect_timeout=5"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Open(ctx, Options{Cluster: "tls", Node: "n1", DSN: dsn("verify-full", caFile)})
	if err != nil {
		t.Fatalf("verify-full with the server's CA: %v", err)
	}
	if _, err := s.MaxEpoch(ctx); err != nil {
		t.Fatalf("a query over verify-full: %v", err)
	}
	_ = s.Close()
	if s, err := Open(ctx, Options{Cluster: "tls", Node: "n1", DSN: dsn("verify-full", otherFile)}); err == nil {
		_ = s.Close()
		t.Fatal("verify-full accepted a server of another CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("another CA: %v (want a certificate error)", err)
	}
	// The same CA, but the certificate names another host.
	srv.Stop()
	if _, err := ca.IssueFiles(crt, key, certs.IssueOptions{Name: "db", Hosts: []string{"db.example"}}); err != nil {
		t.Fatal(err)
	}
	srv2, err := dbserver.StartPostgresTLS(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	if s, err := Open(ctx, Options{Cluster: "tls", Node: "n1", DSN: "postgres://haven@" + srv2.Addr + "/postgres?sslmode=verify-full&sslrootcert=" + caFile + "&connect_timeout=5"}); err == nil {
		_ = s.Close()
		t.Fatal("verify-full accepted a certificate for another host name")
	}
}
