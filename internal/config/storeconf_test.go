package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const twoNodes = `nodes:
  - {name: a, api: 127.0.0.1:7001}
  - {name: b, api: 127.0.0.1:7002}
`

func TestStoreSection(t *testing.T) {
	c := mustParse(t, "/etc/haven/haven.yaml", "cluster: x\ndata_dir: /tmp/x\nstore: {backend: postgres, dsn: \"postgres://haven:s3cret@db:5432/haven\"}\n"+twoNodes)
	want := Store{Backend: "postgres", DSN: "postgres://haven:s3cret@db:5432/haven", PollInterval: 500 * time.Millisecond, TablePrefix: "haven_", Line: 3}
	if c.Store.Endpoints != nil || c.Store.Backend != want.Backend || c.Store.DSN != want.DSN || c.Store.PollInterval != want.PollInterval || c.Store.TablePrefix != want.TablePrefix || c.Store.Line != 3 {
		t.Fatalf("store = %+v, want %+v", c.Store, want)
	}
	if !c.Store.Shared() || !c.Store.External() {
		t.Fatal("postgres must be shared and external")
	}
	d := c.Describe()
	for _, w := range []string{"store: postgres, shared database", "two included, is safe without a witness", "***", "nodes: 2, none votes"} {
		if !strings.Contains(d, w) {
			t.Errorf("Describe lacks %q:\n%s", w, d)
		}
	}
	if strings.Contains(d, "s3cret") {
		t.Errorf("Describe shows the password:\n%s", d)
	}

	c = mustParse(t, "h.yaml", "cluster: x\ndata_dir: /tmp/x\nstore: {backend: mysql, dsn_file: secret.dsn, poll_interval: 50ms, table_prefix: ha_}\n"+twoNodes)
	if c.Store.DSNFile != "secret.dsn" || c.Store.PollInterval != 50*time.Millisecond || c.Store.TablePrefix != "ha_" {
		t.Fatalf("mysql store = %+v", c.Store)
	}

	c = mustParse(t, "h.yaml", "cluster: x\ndata_dir: /tmp/x\nstore:\n  backend: etcd\n  endpoints: [10.0.0.5:2379, \"https://10.0.0.6:2379\"]\n  tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem}\n  username: haven\n  password_file: pw\n"+twoNodes)
	if len(c.Store.Endpoints) != 2 || c.Store.TLS.KeyFile != "k.pem" || c.Store.Username != "haven" || c.Store.PasswordFile != "pw" {
		t.Fatalf("etcd store = %+v", c.Store)
	}
}

func TestStoreSectionErrors(t *testing.T) {
	nodes3 := "nodes:\n  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201}\n"
	cases := []struct{ name, yaml, want string }{
		{"bad backend", "store: {backend: zookeeper}\n" + twoNodes, `3: store.backend: invalid value "zookeeper"`},
		{"no dsn", "store: {backend: postgres}\n" + twoNodes, "3: store.dsn: missing"},
		{"both dsn", "store: {backend: mysql, dsn: x, dsn_file: y}\n" + twoNodes, "store.dsn_file: both dsn and dsn_file"},
		{"etcd field on postgres", "store: {backend: postgres, dsn: x, endpoints: [a:1]}\n" + twoNodes, "store.endpoints: does not apply to backend postgres"},
		{"no endpoints", "store: {backend: etcd}\n" + twoNodes, "store.endpoints: missing"},
		{"bad endpoint", "store: {backend: etcd, endpoints: [nohost]}\n" + twoNodes, "store.endpoints[0]: invalid endpoint"},
		{"cert without key", "store: {backend: etcd, endpoints: [a:1], tls: {cert_file: c}}\n" + twoNodes, "cert_file and key_file go together"},
		{"user without password", "store: {backend: etcd, endpoints: [a:1], username: u}\n" + twoNodes, "username and password_file go together"},
		{"bad prefix", "store: {backend: mysql, dsn: x, table_prefix: Haven-}\n" + twoNodes, "store.table_prefix: invalid prefix"},
		{"fast poll", "store: {backend: mysql, dsn: x, poll_interval: 1ms}\n" + twoNodes, "store.poll_interval: 1ms is below 10ms"},
		{"witness with a database", "store: {backend: postgres, dsn: x}\n" + twoNodes + "  - {name: w, witness: true}\n", "a witness is an embedded etcd vote"},
		{"two nodes embedded", twoNodes, "let a shared database arbitrate"},
		{"embedded needs peer", nodes3, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("h.yaml", []byte("cluster: x\ndata_dir: /tmp/x\n"+tc.yaml))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// Without an external store, peer and client stay required.
	_, err := Parse("h.yaml", []byte("cluster: x\ndata_dir: /tmp/x\nnodes:\n  - {name: a, api: 127.0.0.1:7001}\n"))
	if err == nil || !strings.Contains(err.Error(), "nodes[0].peer: missing") {
		t.Fatalf("embedded without peer: %v", err)
	}
}

func TestConnStringFromFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "dsn")
	if err := os.WriteFile(f, []byte("postgres://haven:pw@${DB_HOST}/haven\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Store{Backend: BackendPostgres, DSNFile: f}
	got, err := s.ConnString(map[string]string{"DB_HOST": "10.0.0.9:5432"})
	if err != nil || got != "postgres://haven:pw@10.0.0.9:5432/haven" {
		t.Fatalf("ConnString = %q, %v", got, err)
	}
	for in, want := range map[string]string{
		"postgres://u:pw@h/db":               "postgres://u:***@h/db",
		"host=h user=u password=pw dbname=d": "host=h user=u password=*** dbname=d",
		"u:pw@tcp(h:3306)/db":                "u:***@tcp(h:3306)/db",
		"postgres://u@h/db":                  "postgres://u@h/db",
	} {
		if got := RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLockDelayWorstCase: with an external etcd, config check counts the
// lock-delay in a node loss (lock_delay: auto, the default) or warns that
// off is unsafe; lock_delay is parsed.
func TestLockDelayWorstCase(t *testing.T) {
	etcd := "cluster: x\ndata_dir: /tmp/x\nstore: {backend: etcd, endpoints: [10.0.0.5:2379]}\n"
	c := mustParse(t, "h.yaml", etcd+twoNodes)
	if c.LockDelay != LockDelayAuto {
		t.Fatalf("lock_delay defaults to %q, want auto", c.LockDelay)
	}
	// lan: 2s + 500ms + 2s + 4 × 50ms.
	if d := c.Describe(); !strings.Contains(d, "agent or node lost, lock_delay: auto") || !strings.Contains(d, "4.7s") {
		t.Fatalf("config check with an external etcd does not count the lock-delay:\n%s", d)
	}
	c = mustParse(t, "h.yaml", etcd+"lock_delay: off\n"+twoNodes)
	if d := c.Describe(); c.LockDelay != LockDelayOff || !strings.Contains(d, "lock_delay: off — unsafe") {
		t.Fatalf("lock_delay: off = %q; config check says:\n%s", c.LockDelay, d)
	}
}
