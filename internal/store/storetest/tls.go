package storetest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/dbserver"
)

// TLSBackend is a SQL backend as RunTLS tests it: its server started with
// a certificate, and its store opened on it verifying the server.
type TLSBackend[S SQLStore] struct {
	// Start starts the database server with the certificate and key files.
	Start func(certFile, keyFile string) (*dbserver.Server, error)
	// Open opens a store on srv that trusts only the CA in caFile and
	// verifies the server's host name.
	Open func(ctx context.Context, srv *dbserver.Server, caFile string) (S, error)
	// How names the verification in failure messages ("verify-full").
	How string
}

// RunTLS: the store connects over verified TLS to a real server whose
// certificate a throwaway CA signed, and refuses a server it cannot
// verify: another CA (with an error that says so), or a certificate for
// another host name.
func RunTLS[S SQLStore](t *testing.T, b TLSBackend[S]) {
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
	srv, err := b.Start(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := b.Open(ctx, srv, caFile)
	if err != nil {
		t.Fatalf("%s with the server's CA: %v", b.How, err)
	}
	if _, err := s.MaxEpoch(ctx); err != nil {
		t.Fatalf("a query over %s: %v", b.How, err)
	}
	_ = s.Close()
	if s, err := b.Open(ctx, srv, otherFile); err == nil {
		_ = s.Close()
		t.Fatalf("%s accepted a server of another CA", b.How)
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("another CA: %v (want a certificate error)", err)
	}
	// The same CA, but the certificate names another host.
	srv.Stop()
	if _, err := ca.IssueFiles(crt, key, certs.IssueOptions{Name: "db", Hosts: []string{"db.example"}}); err != nil {
		t.Fatal(err)
	}
	srv2, err := b.Start(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	if s, err := b.Open(ctx, srv2, caFile); err == nil {
		_ = s.Close()
		t.Fatalf("%s accepted a certificate for another host name", b.How)
	}
}
