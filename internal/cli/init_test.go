package cli

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
)

// TestInit: haven init writes a valid config for the nodes, a token, one
// env file per node, a dashboard operator whose password it prints once
// (only the hash is in the file), and refuses to overwrite.
func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var out, errw bytes.Buffer
	args := []string{"init", "--cluster", "shop", "--node", "db1=10.0.0.1", "--node", "db2=10.0.0.2", "--witness", "arb=10.0.0.3", "--out", dir}
	if code := Main(args, &out, &errw); code != exitOK {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	for _, f := range []string{"haven.yaml", "token", "db1.env", "db2.env", "arb.env"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("no %s: %v", f, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("token mode %v, want 0600", fi.Mode().Perm())
	}
	text, _ := os.ReadFile(filepath.Join(dir, "haven.yaml"))
	local := strings.Replace(string(text), "/etc/haven/token", filepath.Join(dir, "token"), 1)
	check := filepath.Join(t.TempDir(), "check.yaml")
	if err := os.WriteFile(check, []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(check)
	if err != nil {
		t.Fatalf("the config haven init wrote does not load: %v\n%s", err, text)
	}
	if len(cfg.Nodes) != 3 || !cfg.Nodes[2].Witness || cfg.Nodes[0].API != "10.0.0.1:7400" {
		t.Fatalf("nodes: %+v", cfg.Nodes)
	}
	pw := regexp.MustCompile(`password (\S+)`).FindStringSubmatch(out.String())
	if pw == nil || strings.Contains(string(text), pw[1]) {
		t.Fatalf("password not printed, or written in clear:\n%s", out.String())
	}
	hash := regexp.MustCompile(`password_hash: "([^"]+)"`).FindStringSubmatch(string(text))
	if hash == nil || bcrypt.CompareHashAndPassword([]byte(hash[1]), []byte(pw[1])) != nil {
		t.Fatal("the printed password does not match the stored hash")
	}
	// Secure by default: a tls: section pointing where the files go on the
	// machines, and a CA, a certificate per node and the operator's in certs/.
	if err := cfg.CheckSecure(); err != nil || cfg.TLS.For("db1") != (config.TLSFiles{CA: "/etc/haven/certs/ca.crt", Cert: "/etc/haven/certs/db1.crt", Key: "/etc/haven/certs/db1.key"}) {
		t.Fatalf("tls: %+v, %v\n%s", cfg.TLS, err, text)
	}
	certDir := filepath.Join(dir, "certs")
	ca, caKey := certs.Layout(certDir)
	for _, name := range []string{"db1", "db2", "arb", certs.Operator} {
		cert, key := certs.Paths(certDir, name)
		if err := certs.Check(certs.Files{CA: ca, Cert: cert, Key: key}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", key, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(caKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v; want 0600", caKey, err)
	}
	// db1's certificate names the addresses the others reach it at.
	pair, err := tls.LoadX509KeyPair(certs.Paths(certDir, "db1"))
	if err != nil || pair.Leaf.VerifyHostname("10.0.0.1") != nil || pair.Leaf.VerifyHostname("10.0.0.2") == nil {
		t.Errorf("db1's certificate: %v", err)
	}
	if env, _ := os.ReadFile(filepath.Join(dir, "arb.env")); !strings.Contains(string(env), "HAVEN_NODE=arb\n") {
		t.Errorf("arb.env: %s", env)
	}
	for _, want := range []string{"systemctl enable --now haven-witness", "install -m 0644 db2.env /etc/default/haven", "7401/tcp",
		"install -m 0644 certs/ca.crt certs/db2.crt /etc/haven/certs/", "install -m 0600 -o haven -g haven certs/arb.key /etc/haven/certs/",
		"Keep certs/ca.key on this workstation only", "certs/operator.crt and .key are the operator's"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the plan lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	errw.Reset()
	if code := Main(args, &out, &errw); code != exitFailure || !strings.Contains(errw.String(), "--force") {
		t.Fatalf("second init: exit %d, %s", code, errw.String())
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "haven.yaml")); !bytes.Equal(after, text) {
		t.Fatal("a refused init changed haven.yaml")
	}
	// A CA left without its haven.yaml is not replaced silently either.
	if err := os.Remove(filepath.Join(dir, "haven.yaml")); err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(ca)
	if code := Main(args, &out, &errw); code != exitFailure || !strings.Contains(errw.String(), "holds a CA already") {
		t.Fatalf("init over a CA: exit %d, %s", code, errw.String())
	}
	out.Reset()
	errw.Reset()
	if code := Main(append(args, "--force"), &out, &errw); code != exitOK {
		t.Fatalf("init --force: exit %d, %s", code, errw.String())
	}
	if after, _ := os.ReadFile(ca); bytes.Equal(after, caPEM) {
		t.Error("init --force kept the old CA")
	}
	cert, key := certs.Paths(certDir, "db1")
	if err := certs.Check(certs.Files{CA: ca, Cert: cert, Key: key}); err != nil {
		t.Errorf("after --force: %v", err)
	}
}

// TestInitBadInput: each mistake exits 2, says what to do, writes nothing.
func TestInitBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node", "a=10.0.0.1"}, "--cluster"},
		{[]string{"--cluster", "Shop", "--node", "a=10.0.0.1"}, "lower-case"},
		{[]string{"--cluster", "c"}, "no --node"},
		{[]string{"--cluster", "c", "--node", "a"}, "NAME=HOST"},
		{[]string{"--cluster", "c", "--node", "a=10.0.0.1:7000"}, "host only"},
		{[]string{"--cluster", "c", "--node", "a=h1", "--node", "a=h2", "--witness", "w=h3"}, "named twice"},
		{[]string{"--cluster", "c", "--node", "a=h1", "--node", "b=h2"}, "add a --witness"},
		{[]string{"--cluster", "c", "--node", "a=h1", "--store", "zk"}, "use embedded"},
		{[]string{"--cluster", "c", "--node", "a=h1", "--timing", "fast"}, "use lan, lan-fast or wan"},
		{[]string{"--cluster", "c", "--node", "a=h1", "--store", "etcd"}, "--endpoints"},
		{[]string{"--cluster", "c", "--node", "a=h1", "--node", "b=h2", "--witness", "w=h3", "--store", "postgres"}, "drop it"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			var out, errw bytes.Buffer
			if code := Main(append(append([]string{"init"}, tc.args...), "--out", dir), &out, &errw); code != exitUsage || !strings.Contains(errw.String(), tc.want) {
				t.Fatalf("exit %d, want 2 with %q; stderr: %s", code, tc.want, errw.String())
			}
			if _, err := os.Stat(dir); err == nil {
				t.Fatal("bad input wrote files")
			}
		})
	}
}

// TestInitLanFast: haven init --timing lan-fast writes a config that loads
// with the lan-fast preset.
func TestInitLanFast(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var out, errw bytes.Buffer
	args := []string{"init", "--cluster", "shop", "--node", "db1=10.0.0.1", "--node", "db2=10.0.0.2", "--witness", "arb=10.0.0.3", "--timing", "lan-fast", "--out", dir}
	if code := Main(args, &out, &errw); code != exitOK {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	text, _ := os.ReadFile(filepath.Join(dir, "haven.yaml"))
	check := filepath.Join(t.TempDir(), "check.yaml")
	if err := os.WriteFile(check, []byte(strings.Replace(string(text), "/etc/haven/token", filepath.Join(dir, "token"), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(check)
	if err != nil || cfg.Timing.Preset != "lan-fast" || cfg.Timing.LeaseTTL != time.Second {
		t.Fatalf("timing %+v, %v\n%s", cfg.Timing, err, text)
	}
}
