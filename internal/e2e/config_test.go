package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
)

const goodNodes = `nodes:
  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201}
  - {name: b, api: 127.0.0.1:7002, peer: 127.0.0.1:7102, client: 127.0.0.1:7202}
  - {name: c, api: 127.0.0.1:7003, peer: 127.0.0.1:7103, client: 127.0.0.1:7203}
`

// sqlNodes: two nodes, which a shared database allows, without etcd addresses.
const sqlNodes = `nodes:
  - {name: a, api: 127.0.0.1:7001}
  - {name: b, api: 127.0.0.1:7002}
`

// TestBadConfigsExitTwo runs the binary on malformed configs: each must be
// refused with exit code 2 and a message naming the file, line and field.
func TestBadConfigsExitTwo(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		want       []string // substrings of stderr
	}{
		{"empty", "", []string{"empty"}},
		{"syntax", "cluster: [unclosed\n", []string{"haven.yaml:"}},
		{"no tls", "cluster: x\ndata_dir: /tmp/x\n" + goodNodes, []string{"haven.yaml: tls: missing", "haven certs init", "insecure: true"}},
		{"unknown key", "cluster: x\ndata_dir: /tmp/x\nleese_ttl: 1s\n" + goodNodes, []string{"haven.yaml:3", "leese_ttl"}},
		{"missing cluster", "data_dir: /tmp/x\n" + goodNodes, []string{"cluster"}},
		{"bad duration", "cluster: x\ndata_dir: /tmp/x\ntimings: {lease_ttl: 1 second}\n" + goodNodes, []string{"haven.yaml:3", "lease_ttl"}},
		{"two voters", "cluster: x\ndata_dir: /tmp/x\nnodes:\n  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201}\n  - {name: b, api: 127.0.0.1:7002, peer: 127.0.0.1:7102, client: 127.0.0.1:7202}\n", []string{"witness"}},
		{"duplicate name", "cluster: x\ndata_dir: /tmp/x\nnodes:\n  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201}\n  - {name: a, api: 127.0.0.1:7002, peer: 127.0.0.1:7102, client: 127.0.0.1:7202}\n  - {name: c, api: 127.0.0.1:7003, peer: 127.0.0.1:7103, client: 127.0.0.1:7203}\n", []string{"haven.yaml:5", "nodes[1].name"}},
		{"duplicate address", "cluster: x\ndata_dir: /tmp/x\nnodes:\n  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201}\n  - {name: b, api: 127.0.0.1:7001, peer: 127.0.0.1:7102, client: 127.0.0.1:7202}\n  - {name: c, api: 127.0.0.1:7003, peer: 127.0.0.1:7103, client: 127.0.0.1:7203}\n", []string{"127.0.0.1:7001"}},
		{"fence margin too big", "cluster: x\ndata_dir: /tmp/x\ntimings: {fence_margin: 2s}\n" + goodNodes, []string{"fence_margin"}},
		{"lease shorter than etcd allows", "cluster: x\ndata_dir: /tmp/x\ntimings: {etcd_election: 2s}\n" + goodNodes, []string{"lease_ttl"}},
		{"demote hook longer than margin", "cluster: x\ndata_dir: /tmp/x\nhooks: {on_demote: {command: [/bin/true], timeout: 5s}}\n" + goodNodes, []string{"on_demote"}},
		{"bad enum", "cluster: x\ndata_dir: /tmp/x\nservice: {command: [/bin/true], standby: lukewarm}\n" + goodNodes, []string{"standby", "hot"}},
		// A malformed connection string is refused at once, not retried
		// as if the database were down.
		{"postgres dsn bad port", "cluster: x\ndata_dir: /tmp/x\nstore: {backend: postgres, dsn: \"postgres://user@:badport/db\"}\n" + sqlNodes, []string{"haven.yaml:3", "store.dsn", "not a valid postgres connection string", "invalid port", "write it like postgres://"}},
		{"postgres dsn garbage", "cluster: x\ndata_dir: /tmp/x\nstore: {backend: postgres, dsn: garbage}\n" + sqlNodes, []string{"haven.yaml:3", "store.dsn", "not a valid postgres connection string"}},
		{"mysql dsn garbage", "cluster: x\ndata_dir: /tmp/x\nstore: {backend: mysql, dsn: garbage}\n" + sqlNodes, []string{"haven.yaml:3", "store.dsn", "not a valid mysql connection string", "tcp(db.example:3306)"}},
		{"mysql dsn bad port", "cluster: x\ndata_dir: /tmp/x\nstore: {backend: mysql, dsn: \"u:p@tcp(db:badport)/haven\"}\n" + sqlNodes, []string{"haven.yaml:3", "store.dsn", "port \"badport\""}},
		{"dsn variable unset", "cluster: x\ndata_dir: /tmp/x\nstore: {backend: mysql, dsn: \"u:p@tcp(${DB})/haven\"}\n" + sqlNodes, []string{"haven.yaml:3", "store.dsn uses ${DB}", "node a does not set", "env"}},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "haven.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"config", "check", path}, {"agent", "--config", path, "--node", "a"}} {
				code, out, errOut := runHaven(t, args...)
				if code != 2 {
					t.Fatalf("haven %v: exit %d, want 2\nstdout: %s\nstderr: %s", args, code, out, errOut)
				}
				for _, w := range tc.want {
					if !strings.Contains(errOut, w) {
						t.Errorf("haven %v: stderr lacks %q:\n%s", args, w, errOut)
					}
				}
			}
		})
	}
}

func TestGoodConfigCheckPrintsTimings(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "haven.yaml")
	if err := os.WriteFile(path, []byte("cluster: x\ndata_dir: /tmp/x\ninsecure: true\n"+goodNodes), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runHaven(t, "config", "check", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "WARNING: insecure: true turns TLS off") {
		t.Errorf("config check does not say why insecure: true is dangerous:\n%s", errOut)
	}
	for _, w := range []string{"lease_ttl", "fence_margin", "worst"} {
		if !strings.Contains(strings.ToLower(out), w) {
			t.Errorf("config check output lacks %q:\n%s", w, out)
		}
	}
}

func TestCLIUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"frobnicate"},
		{"agent", "--no-such-flag"},
		{"status", "--config"},
		{"config", "lint", "x"},
		{"agent"},
	} {
		code, _, errOut := runHaven(t, args...)
		if code != 2 || errOut == "" {
			t.Errorf("haven %v: exit %d, stderr %q; want exit 2 with a message", args, code, errOut)
		}
	}
	code, out, _ := runHaven(t, "version")
	if code != 0 || !strings.HasPrefix(out, "haven ") {
		t.Errorf("haven version: exit %d, %q", code, out)
	}
}

// TestSIGHUPReloads: SIGHUP to a real agent re-reads its config instead of
// killing it (Go's default), which would cost a failover. log.level takes
// effect; other changes are reported as needing a restart; a broken file
// changes nothing. The node stays active throughout.
func TestSIGHUPReloads(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{nodes: 1})
	active, epoch := c.WaitActive(startTimeout)
	cfg, err := config.Load(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	logFile := agent.LogPath(cfg, active)
	orig, err := os.ReadFile(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	hup := func(text, want string) {
		t.Helper()
		if err := os.WriteFile(c.Config, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(logFile)
		c.Signal(active, syscall.SIGHUP)
		e2etest.WaitFor(t, 10*time.Second, "the agent to log "+want, func() bool {
			b, _ := os.ReadFile(logFile)
			return len(b) > len(before) && strings.Contains(string(b[len(before):]), want)
		})
		if now, e := c.WaitActive(5 * time.Second); now != active || e != epoch {
			t.Fatalf("after SIGHUP: %s active at epoch %d, want %s still at %d", now, e, active, epoch)
		}
	}
	hup(string(orig), "SIGHUP: config re-read")
	changed := strings.Replace(strings.Replace(string(orig), "level: debug", "level: info", 1), "lease_ttl: 3s", "lease_ttl: 4s", 1)
	if changed == string(orig) {
		t.Fatal("the test config has no log level or lease to change")
	}
	hup(changed, "changed=Timing")
	hup("cluster: [not, a, name]\n", "the config file does not load; nothing changed")
	select {
	case <-c.Node(active).done:
		t.Fatal("the agent exited")
	default:
	}
}
