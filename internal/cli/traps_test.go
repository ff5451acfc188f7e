package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const trapCluster = `cluster: demo
insecure: true
data_dir: /var/lib/haven
nodes:
  - {name: n1, api: 127.0.0.1:7101, peer: 127.0.0.1:7201, client: 127.0.0.1:7301, backend: 127.0.0.1:8101}
  - {name: n2, api: 127.0.0.1:7102, peer: 127.0.0.1:7202, client: 127.0.0.1:7302, backend: 127.0.0.1:8102}
  - {name: w1, witness: true, peer: 127.0.0.1:7203, client: 127.0.0.1:7303}
`

// TestConfigCheckTraps: config check fails on a proxy.listen the agents
// would share, warns (with a measured process start) of an exec check with
// the demo's timings, and haven agent refuses the shared listen before
// starting anything.
func TestConfigCheckTraps(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	shared := write("shared.yaml", trapCluster+"proxy: {listen: '127.0.0.1:8080'}\n")
	var out, errw bytes.Buffer
	if code := Main([]string{"config", "check", shared}, &out, &errw); code != exitUsage {
		t.Fatalf("config check of a shared proxy.listen: exit %d, want %d\n%s%s", code, exitUsage, out.String(), errw.String())
	}
	if !strings.Contains(errw.String(), "shared.yaml:8: proxy.listen: nodes n1 and n2 run on one host") || !strings.Contains(errw.String(), "proxy.standalone: true") {
		t.Fatalf("config check stderr:\n%s", errw.String())
	}
	out.Reset()
	errw.Reset()
	if code := Main([]string{"agent", "--config", shared, "--node", "n1"}, &out, &errw); code == exitOK || !strings.Contains(errw.String(), "would both start a proxy") {
		t.Fatalf("haven agent with a shared proxy.listen: exit %d\n%s", code, errw.String())
	}

	execCheck := write("exec.yaml", trapCluster+"checks:\n  - {name: redis, exec: {command: [redis-cli, ping]}, interval: 100ms, timeout: 100ms}\n")
	out.Reset()
	errw.Reset()
	if code := Main([]string{"config", "check", execCheck}, &out, &errw); code != exitOK {
		t.Fatalf("config check of a fast exec check: exit %d, want 0 (a warning)\n%s", code, errw.String())
	}
	for _, want := range []string{"warning: ", "exec.yaml:9: checks[0].timeout: 100ms is too short for an exec check", "measured here, now: starting a process (/bin/true) took"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("config check output lacks %q:\n%s", want, out.String())
		}
	}

	standalone := write("standalone.yaml", trapCluster+"proxy: {standalone: true, mode: tcp}\n")
	out.Reset()
	errw.Reset()
	if code := Main([]string{"config", "check", standalone}, &out, &errw); code != exitOK || strings.Contains(out.String(), "warning") {
		t.Fatalf("config check of a standalone proxy section: exit %d\n%s%s", code, out.String(), errw.String())
	}
	out.Reset()
	errw.Reset()
	if code := Main([]string{"proxy", "--config", standalone}, &out, &errw); code != exitUsage || !strings.Contains(errw.String(), "--listen ADDR") {
		t.Fatalf("haven proxy without an address: exit %d\n%s", code, errw.String())
	}
	errw.Reset()
	if code := Main([]string{"proxy", "--config", standalone, "--listen", "127.0.0.1:0", "--mode", "udp"}, &out, &errw); code != exitUsage || !strings.Contains(errw.String(), "use http or tcp") {
		t.Fatalf("haven proxy --mode udp: exit %d\n%s", code, errw.String())
	}
}
