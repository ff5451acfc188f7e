package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trapNodes is a valid two-node cluster on one host with a witness; cases
// append from line 17.
const trapNodes = `cluster: demo
data_dir: /var/lib/haven
nodes:
  - name: n1
    api: 127.0.0.1:7101
    peer: 127.0.0.1:7201
    client: 127.0.0.1:7301
    backend: 127.0.0.1:8101
    env: {PORT: "8101", PROXY_LISTEN: "127.0.0.1:8001"}
  - name: n2
    api: 127.0.0.1:7102
    peer: 127.0.0.1:7202
    client: 127.0.0.1:7302
    backend: 127.0.0.1:8102
    env: {PORT: "8102", PROXY_LISTEN: "127.0.0.1:8002"}
  - {name: w1, witness: true, peer: 127.0.0.1:7203, client: 127.0.0.1:7303}
`

// TestTraps: every trap of issue #18 and its message, in
// testdata/traps.golden (go test -update rewrites it). Each case lists
// what Parse reports: errors, agent errors (which stop `haven agent` but
// not `haven proxy`) and warnings.
func TestTraps(t *testing.T) {
	base := trapNodes
	cases := []struct{ name, extra string }{
		{"clean", "service: {command: [/usr/sbin/nginx, -g, 'daemon off;', -c, '/etc/nginx/${HAVEN_NODE}.conf']}\nchecks:\n  - {tcp: {address: '127.0.0.1:${PORT}'}}\n  - {exec: {command: [redis-cli, ping]}, interval: 1s, timeout: 1s}\nproxy: {listen: '${PROXY_LISTEN}'}\n"},
		{"undefined var in the service", "service: {command: [/usr/sbin/nginx, -c, '${NGINX_CONFIG}']}\n"},
		{"var only some nodes define", ""},
		{"undefined var in a hook and a check", "hooks:\n  on_promote: {command: [/usr/local/bin/promote, '${HAVEN_EPOCH}', '${TARGET}']}\nchecks:\n  - {http: {url: 'http://127.0.0.1:${PORT}/${HEALTH_PATH}'}}\n"},
		{"unbraced var is left to the shell", "service: {command: [sh, -c, 'exec redis-server --port $REDIS_PORT']}\n"},
		{"exec check copied from the demo's timings", "checks:\n  - {name: redis, exec: {command: [redis-cli, ping]}, interval: 100ms, timeout: 100ms}\n"},
		{"shared proxy listen", "proxy: {listen: '127.0.0.1:8080'}\n"},
		{"shared proxy listen on all interfaces", "proxy: {listen: ':8080'}\n"},
		{"standalone proxy section", "proxy: {standalone: true, mode: tcp}\n"},
		{"undefined var in proxy listen", "proxy: {listen: '${PROXY_ADDR}'}\n"},
		{"nginx without daemon off", "service: {command: [/usr/sbin/nginx, -c, /etc/nginx/nginx.conf]}\n"},
		{"redis daemonize yes", "service: {command: [redis-server, --port, '6379', --daemonize, 'yes']}\n"},
		{"pg_ctl start", "service: {command: [pg_ctl, -D, /var/lib/pg, start]}\n"},
		{"lan-fast", "timing: lan-fast\n"},
		{"lan-fast on an external etcd", "timing: lan-fast\nstore: {backend: etcd, endpoints: ['127.0.0.1:2379']}\n"},
	}
	var b strings.Builder
	for _, tc := range cases {
		text := base + tc.extra
		if tc.name == "var only some nodes define" {
			text = strings.Replace(base, `env: {PORT: "8102", PROXY_LISTEN: "127.0.0.1:8002"}`, `env: {PROXY_LISTEN: "127.0.0.1:8002"}`, 1) + "checks:\n  - {tcp: {address: '127.0.0.1:${PORT}'}}\n"
		}
		if tc.name == "lan-fast on an external etcd" { // the store votes: no witness
			text = strings.Replace(base, "  - {name: w1, witness: true, peer: 127.0.0.1:7203, client: 127.0.0.1:7303}\n", "", 1) + tc.extra
		}
		fmt.Fprintf(&b, "== %s\n", tc.name)
		c, err := Parse("/etc/haven.yaml", []byte(text))
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%s: %v", tc.name, err)
			}
			for _, p := range ce.Problems {
				fmt.Fprintf(&b, "error %d %s: %s\n", p.Line, p.Field, p.Msg)
			}
			continue
		}
		for _, p := range c.AgentErrors {
			fmt.Fprintf(&b, "agent error %d %s: %s\n", p.Line, p.Field, p.Msg)
		}
		for _, p := range c.Warnings {
			fmt.Fprintf(&b, "warning %d %s: %s\n", p.Line, p.Field, p.Msg)
		}
	}
	got := b.String()
	golden := filepath.Join("testdata", "traps.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("traps differ from %s (run go test -update to rewrite it):\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
	// The cases that must be reported are.
	for _, want := range []string{"${NGINX_CONFIG} is not defined for any node", "${PORT} is not defined for node n2 (only n1 has it)", "${TARGET}", "${HEALTH_PATH}", "100ms is too short for an exec check", "would both start a proxy on 127.0.0.1:8080", "would both start a proxy on :8080", "${PROXY_ADDR} is not defined", "unless its configuration says `daemon off;`", "use --daemonize no", "run the server itself"} {
		if !strings.Contains(got, want) {
			t.Errorf("no report containing %q", want)
		}
	}
	for _, clean := range []string{"== clean\n== undefined", "== unbraced var is left to the shell\n== exec", "== standalone proxy section\n== undefined var in proxy"} {
		if !strings.Contains(got, clean) {
			t.Errorf("a clean case reports something: want %q in\n%s", clean, got)
		}
	}
}
