package etcdstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRestoreRefuses: a file that is not an etcd snapshot, and a data
// directory in the way without Force, are refused and nothing is written.
func TestRestoreRefuses(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a snapshot ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	o := RestoreOptions{Snapshot: junk, Name: "n1", DataDir: filepath.Join(dir, "n1", "etcd"), Peer: "127.0.0.1:1", Token: "x", Margin: 1, Now: time.Now()}
	if _, err := RestoreSnapshot(o); err == nil || !strings.Contains(err.Error(), "integrity check") {
		t.Fatalf("restore of a junk file: %v, want an integrity check error", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "n1")); len(ents) != 0 {
		t.Fatalf("a refused restore left %v", ents)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreSnapshot(o); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over a data directory: %v, want a refusal naming --force", err)
	}
	o.Margin = 0
	o.DataDir = filepath.Join(dir, "n2", "etcd")
	if _, err := RestoreSnapshot(o); err == nil || !strings.Contains(err.Error(), "margin") {
		t.Fatalf("a restore without a margin: %v, want a refusal", err)
	}
}
