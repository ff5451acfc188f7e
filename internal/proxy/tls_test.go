package proxy

import (
	"crypto/tls"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/certs"
)

// TestTLS: the proxy terminates TLS (HTTP/2 by ALPN, nothing below TLS
// 1.2), reloads its certificate without dropping open connections (a bad
// file keeps the old one), and speaks TLS to a backend it verifies with the
// configured CA.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("haven test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "proxy.pem"), filepath.Join(dir, "proxy.key")
	serial1, err := ca.Issue(certFile, keyFile, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}

	// A backend that speaks only TLS, with a certificate from the same CA.
	n1 := newFakeNode(t, "n1", nil)
	n1.backend.Close()
	beCert, beKey := filepath.Join(dir, "backend.pem"), filepath.Join(dir, "backend.key")
	if _, err := ca.Issue(beCert, beKey, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(beCert, beKey)
	if err != nil {
		t.Fatal(err)
	}
	n1.backend = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "plain HTTP to a TLS backend", http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "n1 over tls\n")
	}))
	n1.backend.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
	n1.backend.StartTLS()
	t.Cleanup(n1.backend.Close)

	cfg := testConfig()
	cfg.TLS.Cert, cfg.TLS.Key = certFile, keyFile
	cfg.BackendTLS.Enabled, cfg.BackendTLS.CAFile = true, caFile
	tp := startProxy(t, cfg, "", n1)
	tp.activate(t, "n1")
	url := "https://" + tp.addr + "/"
	newClient := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true,
		}}
	}
	// get returns the serial of the certificate the answering connection presented.
	get := func(c *http.Client, what string) *big.Int {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "n1 over tls\n" || resp.ProtoMajor != 2 {
			t.Fatalf("%s: %s %s %q; want 200 over HTTP/2 from the TLS backend", what, resp.Proto, resp.Status, body)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber
	}
	old := newClient()
	if s := get(old, "first request"); s.Cmp(serial1) != 0 {
		t.Fatalf("first request: certificate serial %v, want %v", s, serial1)
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if c, err := tls.Dial("tcp", tp.addr, &tls.Config{RootCAs: ca.Pool(), MinVersion: v, MaxVersion: v}); err == nil {
			c.Close()
			t.Errorf("a TLS %x handshake succeeded; the minimum is TLS 1.2", v)
		}
	}

	// Reload: new connections get the new certificate, the open one stays.
	serial2, err := ca.Issue(certFile, keyFile, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if s := get(old, "request on the connection opened before the reload"); s.Cmp(serial1) != 0 {
		t.Errorf("after reload, the open connection answered with certificate %v: it was dropped (want %v)", s, serial1)
	}
	if s := get(newClient(), "new connection after reload"); s.Cmp(serial2) != 0 {
		t.Errorf("after reload, a new connection got certificate %v, want the new one %v", s, serial2)
	}

	// A broken file: the reload fails and the proxy keeps serving the last good one.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tp.ReloadTLS(); err == nil {
		t.Error("reloading a broken certificate file succeeded")
	}
	if s := get(newClient(), "new connection after a failed reload"); s.Cmp(serial2) != 0 {
		t.Errorf("after a failed reload, certificate %v, want the last good one %v", s, serial2)
	}
}
