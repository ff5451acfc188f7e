package etcdstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/dbserver"
)

// TestExternalEtcdTLS: the store dials a real external etcd whose client
// port is mutual TLS (store.tls: a CA and a client certificate), and a
// client without a certificate, or with one of another CA, gets nothing.
func TestExternalEtcdTLS(t *testing.T) {
	dir := t.TempDir()
	if err := certs.Init(dir, "ext", []certs.Node{{Name: "etcd", Hosts: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	ca, _ := certs.Layout(dir)
	srvCert, srvKey := certs.Paths(dir, "etcd")
	srv, err := dbserver.StartEtcdTLS(ca, srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	opCert, opKey := certs.Paths(dir, certs.Operator)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := DialOptions("ext", Options{Endpoints: []string{srv.Addr}, DialTimeout: 2 * time.Second, CAFile: ca, CertFile: opCert, KeyFile: opKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MaxEpoch(ctx); err != nil {
		t.Fatalf("a read over mutual TLS: %v", err)
	}
	_ = s.Close()

	other, err := certs.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	oc, ok := filepath.Join(dir, "o.crt"), filepath.Join(dir, "o.key")
	if _, err := other.Issue(oc, ok, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{
		"no certificate": {CAFile: ca},
		"another CA":     {CAFile: ca, CertFile: oc, KeyFile: ok},
		"plain":          {},
	} {
		o.Endpoints, o.DialTimeout = []string{srv.Addr}, time.Second
		s, err := DialOptions("ext", o)
		if err != nil {
			continue // refused at once: fine
		}
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = s.MaxEpoch(cctx)
		ccancel()
		_ = s.Close()
		if err == nil {
			t.Errorf("%s: read the store", name)
		}
	}
}
