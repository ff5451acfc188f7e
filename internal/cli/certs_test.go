package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haven-ha/haven/internal/api"
)

const certsTestNodes = `nodes:
  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201}
  - {name: b, api: 127.0.0.1:7002, peer: 127.0.0.1:7102, client: 127.0.0.1:7202}
  - {name: c, api: 127.0.0.1:7003, peer: 127.0.0.1:7103, client: 127.0.0.1:7203}
`

func run(args ...string) (int, string, string) {
	var out, errw bytes.Buffer
	code := Main(args, &out, &errw)
	return code, out.String(), errw.String()
}

// TestCertsInitAndConfigCheck: certs init writes a CA and a certificate
// per node and for the operator and prints the tls: section; config check
// passes with it, and refuses a key others can read and a key that is not
// the certificate's, saying what to do.
func TestCertsInitAndConfigCheck(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "haven.yaml")
	base := "cluster: x\ndata_dir: " + filepath.Join(dir, "data") + "\n"
	if err := os.WriteFile(cfgPath, []byte(base+certsTestNodes), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run("config", "check", cfgPath)
	if code != exitUsage || !strings.Contains(errOut, "tls: missing") || !strings.Contains(errOut, "haven certs init") {
		t.Fatalf("config check without tls: exit %d: %s", code, errOut)
	}
	code, out, errOut := run("certs", "init", "--config", cfgPath)
	if code != 0 {
		t.Fatalf("certs init: exit %d: %s", code, errOut)
	}
	certDir := filepath.Join(dir, "certs")
	for _, f := range []string{"ca.crt", "ca.key", "a.crt", "a.key", "b.key", "c.crt", "operator.crt", "operator.key"} {
		if _, err := os.Stat(filepath.Join(certDir, f)); err != nil {
			t.Errorf("certs init did not write %s: %v", f, err)
		}
	}
	i := strings.Index(out, "tls:\n")
	if i < 0 {
		t.Fatalf("certs init does not print the tls: section:\n%s", out)
	}
	if err := os.WriteFile(cfgPath, []byte(base+out[i:]+certsTestNodes), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run("config", "check", cfgPath)
	if code != 0 || !strings.Contains(out, "tls: a's certificate") || strings.Contains(errOut, "WARNING") {
		t.Fatalf("config check with certificates: exit %d\n%s\n%s", code, out, errOut)
	}
	// A second init must not replace the CA.
	if code, _, errOut := run("certs", "init", "--config", cfgPath); code == 0 || !strings.Contains(errOut, "already holds a CA") {
		t.Errorf("second certs init: exit %d: %s", code, errOut)
	}
	// certs add renews one node's certificate with the same CA.
	if code, out, errOut := run("certs", "add", "--config", cfgPath, "b"); code != 0 || !strings.Contains(out, "SIGHUP") {
		t.Fatalf("certs add: exit %d: %s %s", code, out, errOut)
	}
	if code, _, errOut := run("certs", "add", "--config", cfgPath, "zz"); code != exitUsage || !strings.Contains(errOut, "no node \"zz\"") {
		t.Errorf("certs add of an unknown node: exit %d: %s", code, errOut)
	}
	if code, _, _ := run("config", "check", cfgPath); code != 0 {
		t.Fatal("config check after certs add")
	}
	keyA := filepath.Join(certDir, "a.key")
	if err := os.Chmod(keyA, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run("config", "check", cfgPath); code != exitUsage || !strings.Contains(errOut, "chmod 600 "+keyA) {
		t.Errorf("a key readable by all: exit %d: %s", code, errOut)
	}
	_ = os.Chmod(keyA, 0o600)
	keyB, _ := os.ReadFile(filepath.Join(certDir, "b.key"))
	if err := os.WriteFile(filepath.Join(certDir, "c.key"), keyB, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run("config", "check", cfgPath); code != exitUsage || !strings.Contains(errOut, "c: certificate") || !strings.Contains(errOut, "give the key that was made with this certificate") {
		t.Errorf("a key of another certificate: exit %d: %s", code, errOut)
	}
}

// TestInsecureConfigCheckWarns: insecure: true passes config check with a
// warning that says why it is dangerous; with a tls: section it is refused.
func TestInsecureConfigCheckWarns(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "haven.yaml")
	base := "cluster: x\ndata_dir: " + filepath.Join(dir, "data") + "\ninsecure: true\n"
	if err := os.WriteFile(cfgPath, []byte(base+certsTestNodes), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run("config", "check", cfgPath)
	if code != 0 || !strings.Contains(errOut, "WARNING") || !strings.Contains(errOut, "move the active role") {
		t.Fatalf("insecure: exit %d: %s", code, errOut)
	}
	if err := os.WriteFile(cfgPath, []byte(base+"tls: {ca_file: a, cert_file: b, key_file: c}\n"+certsTestNodes), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run("config", "check", cfgPath); code != exitUsage || !strings.Contains(errOut, "contradict") {
		t.Fatalf("insecure with tls: exit %d: %s", code, errOut)
	}
}

// TestStatusShowsWarnings: the reporter's security warnings head the
// status table.
func TestStatusShowsWarnings(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, api.Status{Cluster: "c", Reporter: "n1", Warnings: []string{"This cluster runs without TLS (insecure: true)"}})
	if !strings.Contains(out.String(), "WARNING: This cluster runs without TLS") {
		t.Fatalf("status:\n%s", out.String())
	}
}
