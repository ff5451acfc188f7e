package release

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestDebianPackage builds the .deb with scripts/package (nfpm), unpacks it
// into a throwaway root beside a copy of this machine's systemd units, and
// checks its files, its binary, and its units with `systemd-analyze verify`
// (no warning at all) and `systemd-analyze security` (exposure at most 5.0).
func TestDebianPackage(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	t.Setenv("HAVEN_VERSION", "9.8.7-test")
	run(t, repo, "scripts/package", dist)
	debs, _ := filepath.Glob(filepath.Join(dist, "haven_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("scripts/package made %v, want one haven_*.deb", debs)
	}
	root := t.TempDir()
	// The units refer to systemd's own targets and to /bin/kill.
	if err := os.MkdirAll(filepath.Join(root, "lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "", "cp", "-a", "/lib/systemd/system", filepath.Join(root, "lib/systemd/"))
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "", "cp", "/usr/bin/kill", filepath.Join(root, "bin/kill"))
	run(t, "", "dpkg-deb", "-x", debs[0], root)

	for _, f := range []string{
		"usr/bin/haven", "lib/systemd/system/haven.service", "lib/systemd/system/haven-witness.service",
		"usr/lib/tmpfiles.d/haven.conf", "etc/default/haven", "usr/share/doc/haven/haven.example.yaml",
		"usr/share/bash-completion/completions/haven", "usr/share/zsh/vendor-completions/_haven",
		"usr/share/fish/vendor_completions.d/haven.fish", "usr/share/doc/haven/monitoring/haven-alerts.yml",
	} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the package lacks /%s", f)
		}
	}
	if conf := run(t, "", "dpkg-deb", "-f", debs[0], "Package", "Version"); !strings.Contains(conf, "Package: haven") || !strings.Contains(conf, "Version: 9.8.7-test") {
		t.Errorf("control: %s", conf)
	}
	if v := run(t, "", filepath.Join(root, "usr/bin/haven"), "--version"); !strings.HasPrefix(v, "haven 9.8.7-test") {
		t.Errorf("haven --version of the packaged binary = %q, want the package's version", v)
	}
	for _, unit := range []string{"haven.service", "haven-witness.service"} {
		if out := run(t, "", "systemd-analyze", "verify", "--root="+root, "/lib/systemd/system/"+unit); strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s:\n%s", unit, out)
		}
	}
	run(t, "", "systemd-analyze", "security", "--offline=yes", "--threshold=50", "--root="+root, "/lib/systemd/system/haven.service")

	// The unit says what haven needs (the brief of #17).
	unit, _ := os.ReadFile(filepath.Join(root, "lib/systemd/system/haven.service"))
	for _, want := range []string{"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "RestartPreventExitStatus=2", "Delegate=yes", "CAP_NET_ADMIN", "CAP_NET_RAW"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("haven.service lacks %s", want)
		}
	}

	// The example config is valid once its token file and certificates
	// exist (secure by default: it has a tls: section).
	example, _ := os.ReadFile(filepath.Join(root, "usr/share/doc/haven/haven.example.yaml"))
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("example-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(t.TempDir(), "certs")
	example = bytes.ReplaceAll(example, []byte("/etc/haven/token"), []byte(token))
	example = bytes.ReplaceAll(example, []byte("/etc/haven/certs"), []byte(certDir))
	cfg := filepath.Join(t.TempDir(), "haven.yaml")
	if err := os.WriteFile(cfg, example, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "", filepath.Join(root, "usr/bin/haven"), "certs", "init", "--config", cfg)
	if out := run(t, "", filepath.Join(root, "usr/bin/haven"), "config", "check", cfg); !strings.Contains(out, "tls: db1's certificate") {
		t.Errorf("config check of the example does not check its certificates:\n%s", out)
	}

	t.Run("QuickStart", func(t *testing.T) { quickStart(t, root) })
}
