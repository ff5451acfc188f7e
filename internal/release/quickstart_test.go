package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/drill"
)

// quickStart runs deploy/quickstart.sh, the commands of docs/deploy.md,
// on three network namespaces as three machines, with the haven binary
// unpacked from the package (root). Only how a command reaches a machine
// differs from ssh and systemd: ON runs it in the machine's namespace with
// its own /tmp and /etc/default (a private mount namespace), a haven group
// and user and the package's binary in /usr/local/bin; PUT copies into its /tmp;
// START runs the unit's command there.
func quickStart(t *testing.T, root string) {
	lab, err := drill.NewLab(3)
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	dir := t.TempDir()
	names := []string{"db1", "db2", "arbiter"}
	var cases strings.Builder
	for i, m := range names {
		for _, d := range []string{"tmp", "default"} {
			if err := os.MkdirAll(filepath.Join(dir, m, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(&cases, "  %s) ns=%s m=%s ;;\n", lab.IP(i+1), lab.Namespace(i+1), m)
	}
	group, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "group"), append(group, "haven:x:64999:\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	// and a haven user, who owns the node's key (the agent runs as root here).
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), append(passwd, "haven:x:64999:64999::/var/lib/haven:/usr/sbin/nologin\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	// The package's binary, as /usr/local/bin/haven on the machines (its
	// own path is under /tmp, which each machine has of its own).
	bin := filepath.Join(root, "usr/bin")
	if err := os.Symlink(bin, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		text := fmt.Sprintf("#!/bin/sh\nset -e\nD=%s\naddr=$1; shift\ncase $addr in\n%s  *) echo \"no machine $addr\" >&2; exit 1 ;;\nesac\n%s\n", dir, cases.String(), body)
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	on := script("on", `exec ip netns exec "$ns" unshare -m --propagation private sh -c 'mount --bind "$0/$1/default" /etc/default && mount --bind "$0/group" /etc/group && mount --bind "$0/passwd" /etc/passwd && mount --bind "$0/bin" /usr/local/bin && mount --bind "$0/$1/tmp" /tmp && shift && exec "$@"' "$D" "$m" "$@"`)
	put := script("put", `cp "$@" "$D/$m/tmp/"`)
	start := script("start", `case $1 in haven) cmd=agent ;; haven-witness) cmd=witness ;; esac
setsid "$D/on" "$addr" sh -c '. /etc/default/haven; export HAVEN_NODE HAVEN_CONFIG; exec haven '$cmd >"$D/$m.log" 2>&1 < /dev/null &
echo $! >> "$D/pids"`)
	defer func() {
		pids, _ := os.ReadFile(filepath.Join(dir, "pids"))
		var groups []int
		for _, p := range strings.Fields(string(pids)) {
			var pid int
			if _, err := fmt.Sscan(p, &pid); err == nil && pid > 1 {
				groups = append(groups, pid)
				_ = syscall.Kill(-pid, syscall.SIGTERM) // setsid: its own group
			}
		}
		// Wait for the agents to stop their services and exit.
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			alive := false
			for _, g := range groups {
				alive = alive || syscall.Kill(-g, 0) == nil
			}
			if !alive {
				break
			}
		}
		for _, g := range groups {
			_ = syscall.Kill(-g, syscall.SIGKILL)
		}
		if t.Failed() {
			for _, m := range names {
				b, _ := os.ReadFile(filepath.Join(dir, m+".log"))
				t.Logf("---- %s ----\n%s", m, lastLines(string(b), 30))
			}
		}
	}()
	repo, _ := filepath.Abs("../..")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "deploy/quickstart.sh"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PATH="+bin+":"+os.Getenv("PATH"),
		"DB1="+lab.IP(1), "DB2="+lab.IP(2), "ARB="+lab.IP(3),
		"ETC="+filepath.Join(dir, "etc"), "DATA="+filepath.Join(dir, "data"),
		"SERVICE=/usr/local/bin/haven sample-service",
		"ON="+on, "PUT="+put, "START="+start)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart.sh: %v\n%s", err, out)
	}
	for _, want := range []string{"Dashboard operator: user operator, password ", "redundancy: ok", "switched over from"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quickstart.sh's output lacks %q:\n%s", want, out)
		}
	}
	// Secure: each machine got the CA's certificate and its own
	// certificate and key (0600, the haven user's), not another's key, the
	// CA's or the operator's, and a haven.yaml with the tls: section.
	for _, m := range names {
		etc := machinePath(dir, m, filepath.Join(dir, "etc"))
		certDir := filepath.Join(etc, "certs")
		st, err := os.Stat(filepath.Join(certDir, m+".key"))
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o600 || !ok || sys.Uid != 64999 {
			t.Errorf("%s: %s.key has mode %v, owner %v; want 0600, the haven user", m, m, st.Mode().Perm(), st.Sys())
		}
		notThere := []string{"ca.key", "operator.key", "operator.crt"}
		if etc != filepath.Join(dir, "etc") { // not shared by the machines
			notThere = append(notThere, otherKeys(names, m)...)
		}
		for _, f := range notThere {
			if _, err := os.Stat(filepath.Join(certDir, f)); err == nil {
				t.Errorf("%s: %s was copied to it", m, f)
			}
		}
		if cfg, _ := os.ReadFile(filepath.Join(etc, "haven.yaml")); !strings.Contains(string(cfg), "ca_file: "+filepath.Join(dir, "etc", "certs", "ca.crt")) {
			t.Errorf("%s: its haven.yaml has no tls: section:\n%s", m, cfg)
		}
	}
}

// machinePath is where path of machine m is on this host: each machine
// has a /tmp of its own (dir/m/tmp), so a path under /tmp is there.
func machinePath(dir, m, path string) string {
	if rel, err := filepath.Rel("/tmp", path); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.Join(dir, m, "tmp", rel)
	}
	return path
}

// otherKeys are the key files of the machines other than m.
func otherKeys(names []string, m string) []string {
	var keys []string
	for _, n := range names {
		if n != m {
			keys = append(keys, n+".key")
		}
	}
	return keys
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestDeployDocShowsTheScript: docs/deploy.md holds deploy/quickstart.sh
// verbatim, so the page shows exactly what the quick start test runs.
func TestDeployDocShowsTheScript(t *testing.T) {
	doc, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("../../deploy/quickstart.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```bash\n"+string(script)+"```\n") {
		t.Fatal("docs/deploy.md does not show deploy/quickstart.sh verbatim in a ```bash block: paste the script in again")
	}
}
