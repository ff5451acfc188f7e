package agent

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
)

// TestSecurityWarnings: status warns without TLS, and 30 days before the
// node's certificate expires, not earlier.
func TestSecurityWarnings(t *testing.T) {
	if w := (&Agent{node: config.Node{Name: "a"}}).securityWarnings(time.Now()); len(w) != 1 || !strings.Contains(w[0], "without TLS") {
		t.Fatalf("insecure: %q", w)
	}
	dir := t.TempDir()
	ca, err := certs.NewCA("c", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := ca.WriteFiles(caFile, filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		left time.Duration
		want string
	}{{40 * 24 * time.Hour, ""}, {10*24*time.Hour + time.Hour, "expires in 10 days"}, {-time.Hour, "expired on"}} {
		crt, key := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
		if _, err := ca.IssueFiles(crt, key, certs.IssueOptions{Name: "a", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(tc.left)}); err != nil {
			t.Fatal(err)
		}
		src, err := certs.Load(certs.Files{CA: caFile, Cert: crt, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		w := (&Agent{node: config.Node{Name: "a"}, tls: src}).securityWarnings(now)
		if tc.want == "" && len(w) != 0 || tc.want != "" && (len(w) != 1 || !strings.Contains(w[0], tc.want)) {
			t.Errorf("%v left: %q, want %q", tc.left, w, tc.want)
		}
	}
}
