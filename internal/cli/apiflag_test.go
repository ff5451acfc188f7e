package cli

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/ha"
)

// TestStatusAPITLS: `haven status --api https://...` verifies the agent
// with --cacert (or the config's tls:), presents --cert/--key when given,
// and refuses with a message and exit 2 what cannot work: https without a
// CA, a CA for plain http, --cert without --key, a URL without a scheme.
func TestStatusAPITLS(t *testing.T) {
	dir := t.TempDir()
	ours, other := filepath.Join(dir, "ours"), filepath.Join(dir, "other")
	nodes := []certs.Node{{Name: "n1", Hosts: []string{"127.0.0.1"}}}
	if err := certs.Init(ours, "x", nodes); err != nil {
		t.Fatal(err)
	}
	if err := certs.Init(other, "y", nodes); err != nil {
		t.Fatal(err)
	}
	ca, _ := certs.Layout(ours)
	otherCA, _ := certs.Layout(other)
	srvCert, srvKey := certs.Paths(ours, "n1")
	opCert, opKey := certs.Paths(ours, certs.Operator)
	src, err := certs.Load(certs.Files{CA: ca, Cert: srvCert, Key: srvKey})
	if err != nil {
		t.Fatal(err)
	}
	var clientCN atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		clientCN.Store(cn)
		_ = json.NewEncoder(w).Encode(api.Status{Leader: ha.Leader{Node: "n1", Epoch: 7},
			Nodes: []api.NodeView{{Name: "n1", Role: ha.RoleActive, Healthy: true, Epoch: 7}}})
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the other CA's handshake fails, as it must
	srv.TLS = src.ServerConfig(false)
	srv.StartTLS()
	defer srv.Close()
	https := srv.URL
	plain := "http://" + strings.TrimPrefix(https, "https://")

	// A config of a cluster with tls: whose operator files are ours.
	cfgPath := filepath.Join(dir, "haven.yaml")
	if err := os.WriteFile(cfgPath, []byte("cluster: x\ndata_dir: "+filepath.Join(dir, "data")+"\ntls:\n  ca_file: "+ca+
		"\n  cert_file: "+filepath.Join(ours, "${NODE}.crt")+"\n  key_file: "+filepath.Join(ours, "${NODE}.key")+"\n"+certsTestNodes), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		msg    string // in stderr
		wantCN string // the client certificate the agent saw
	}{
		{"https without a CA", []string{"--api", https}, exitUsage, "pass --cacert", ""},
		{"https with the CA", []string{"--api", https, "--cacert", ca}, exitOK, "", ""},
		{"https with another CA", []string{"--api", https, "--cacert", otherCA}, exitFailure, "certificate", ""},
		{"client certificate", []string{"--api", https + "/", "--cacert", ca, "--cert", opCert, "--key", opKey}, exitOK, "", certs.Operator},
		{"the config's TLS", []string{"--api", https, "--config", cfgPath}, exitOK, "", certs.Operator},
		{"--cert without --key", []string{"--api", https, "--cacert", ca, "--cert", opCert}, exitUsage, "--cert and --key go together", ""},
		{"a certificate of another CA", []string{"--api", https, "--cacert", ca, "--cert", filepath.Join(other, "operator.crt"), "--key", filepath.Join(other, "operator.key")}, exitUsage, "not signed by the CA", ""},
		{"a CA that is not there", []string{"--api", https, "--cacert", filepath.Join(dir, "nope.crt")}, exitUsage, "nope.crt", ""},
		{"a CA for plain http", []string{"--api", plain, "--cacert", ca}, exitUsage, "use https://", ""},
		{"no scheme", []string{"--api", strings.TrimPrefix(https, "https://")}, exitUsage, "http://HOST:PORT or https://HOST:PORT", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clientCN.Store("none")
			code, out, errOut := run(append([]string{"status"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d, want %d; want %q in stderr:\n%s\nstdout: %s", code, tc.code, tc.msg, errOut, out)
			}
			if code != exitOK {
				return
			}
			if !strings.Contains(out, "n1 at epoch 7") {
				t.Errorf("stdout does not show the status:\n%s", out)
			}
			if cn := clientCN.Load(); cn != tc.wantCN {
				t.Errorf("the agent saw client certificate %q, want %q", cn, tc.wantCN)
			}
		})
	}
}
