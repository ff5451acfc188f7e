package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

const ms = time.Millisecond

func mustParse(t *testing.T, path, text string) *Config {
	t.Helper()
	c, err := Parse(path, []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestParseFull(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := mustParse(t, "testdata/full.yaml", string(data))
	want := &Config{
		Store:   Store{Backend: "embedded"},
		Path:    "testdata/full.yaml",
		Cluster: "demo",
		Mode:    "active-passive",
		DataDir: filepath.Join("testdata", "data"),
		Timing: Timing{
			Preset:        "lan (custom)",
			LeaseTTL:      2 * time.Second,
			RenewInterval: 150 * ms,
			RenewTimeout:  150 * ms,
			FenceMargin:   300 * ms,
			EtcdHeartbeat: 50 * ms,
			EtcdElection:  500 * ms,
		},
		Nodes: []Node{
			{Name: "n1", Site: "dc1", API: "127.0.0.1:7101", Peer: "127.0.0.1:7201", Client: "127.0.0.1:7301", Env: map[string]string{"SERVICE_ADDR": "127.0.0.1:8101"}, Line: 10},
			{Name: "n2", Site: "Paris 2", API: "127.0.0.1:7102", Peer: "127.0.0.1:7202", Client: "127.0.0.1:7302", Env: map[string]string{"SERVICE_ADDR": "127.0.0.1:8102"}, Line: 16},
			{Name: "w1", Peer: "127.0.0.1:7203", Client: "127.0.0.1:7303", Witness: true, Line: 24},
		},
		Service: Service{
			Command:      []string{"/usr/bin/myservice", "--listen", "${SERVICE_ADDR}"},
			Env:          map[string]string{"MODE": "production"},
			Dir:          "/srv/myservice",
			Standby:      "cold",
			StopSignal:   "SIGINT",
			StopGrace:    2 * time.Second,
			Restart:      "on-failure",
			RestartDelay: 100 * ms,
		},
		Hooks: Hooks{
			OnPromote:      Hook{Command: []string{"/usr/local/bin/promote", "${HAVEN_EPOCH}"}, Timeout: 3 * time.Second},
			OnDemote:       Hook{Command: []string{"/usr/local/bin/demote"}, Timeout: 200 * ms},
			PromoteBackoff: 30 * time.Second,
		},
		Checks: []Check{
			{Name: "web", HTTP: &HTTPCheck{URL: "http://${SERVICE_ADDR}/healthz", ExpectStatus: 204}, Interval: 100 * ms, Timeout: 80 * ms, Rise: 3, Fall: 1},
			{Name: "tcp-1", TCP: &TCPCheck{Address: "${SERVICE_ADDR}"}, Interval: 500 * ms, Timeout: 500 * ms, Rise: 2, Fall: 2},
			{Name: "exec-2", Exec: &ExecCheck{Command: []string{"/bin/true"}}, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 2},
		},
		Log: Log{Level: "debug", Format: "json"},
	}
	withOpsDefaults(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(full.yaml):\n got %s\nwant %s", dump(got), dump(want))
	}
}

// dump prints a Config with its pointers followed, for diffs by eye.
func dump(c *Config) string {
	s := fmt.Sprintf("%+v", *c)
	for _, ch := range c.Checks {
		if ch.HTTP != nil {
			s += fmt.Sprintf(" http=%+v", *ch.HTTP)
		}
		if ch.TCP != nil {
			s += fmt.Sprintf(" tcp=%+v", *ch.TCP)
		}
		if ch.Exec != nil {
			s += fmt.Sprintf(" exec=%+v", *ch.Exec)
		}
	}
	return s
}

func TestParseDefaults(t *testing.T) {
	data, err := os.ReadFile("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := mustParse(t, "testdata/minimal.yaml", string(data))
	lan, _ := Preset("lan")
	want := &Config{
		Store:   Store{Backend: "embedded"},
		Path:    "testdata/minimal.yaml",
		Cluster: "solo",
		Mode:    "active-passive",
		DataDir: "/var/lib/haven",
		Timing:  lan,
		Nodes:   []Node{{Name: "n1", API: "127.0.0.1:7101", Peer: "127.0.0.1:7201", Client: "127.0.0.1:7301", Line: 4}},
		Service: Service{Standby: "hot", StopSignal: "SIGTERM", StopGrace: 5 * time.Second, Restart: "always", RestartDelay: 200 * ms},
		Hooks: Hooks{
			OnPromote:      Hook{Timeout: 5 * time.Second},
			OnDemote:       Hook{Timeout: 150 * ms}, // fence_margin/2
			PromoteBackoff: 10 * time.Second,
		},
		Log: Log{Level: "info", Format: "text"},
	}
	withOpsDefaults(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(minimal.yaml):\n got %s\nwant %s", dump(got), dump(want))
	}
}

// threeNodes is a valid cluster; cases below append to it from line 16 or
// replace parts of it.
const threeNodes = `cluster: demo
data_dir: /var/lib/haven
nodes:
  - name: n1
    api: 127.0.0.1:7101
    peer: 127.0.0.1:7201
    client: 127.0.0.1:7301
  - name: n2
    api: 127.0.0.1:7102
    peer: 127.0.0.1:7202
    client: 127.0.0.1:7302
  - name: w1
    witness: true
    peer: 127.0.0.1:7203
    client: 127.0.0.1:7303
`

func TestPresets(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		want  Timing
	}{
		{"default is lan", "", Timing{Preset: "lan", LeaseTTL: 2 * time.Second, RenewInterval: 250 * ms, RenewTimeout: 400 * ms, FenceMargin: 300 * ms, EtcdHeartbeat: 50 * ms, EtcdElection: 500 * ms}},
		{"lan", "timing: lan\n", Timing{Preset: "lan", LeaseTTL: 2 * time.Second, RenewInterval: 250 * ms, RenewTimeout: 400 * ms, FenceMargin: 300 * ms, EtcdHeartbeat: 50 * ms, EtcdElection: 500 * ms}},
		{"wan", "timing: wan\n", Timing{Preset: "wan", LeaseTTL: 10 * time.Second, RenewInterval: time.Second, RenewTimeout: time.Second, FenceMargin: 2 * time.Second, EtcdHeartbeat: 250 * ms, EtcdElection: 2500 * ms}},
		// Overrides that leave less room lower lan's renew_interval to fit
		// the rules, not below its old 100ms (a config that passed before
		// issue 20 still passes); one written in the file is kept.
		{"lan overrides", "timings: {lease_ttl: 2s, fence_margin: 500ms}\n",
			Timing{Preset: "lan (custom)", LeaseTTL: 2 * time.Second, RenewInterval: 100 * ms, RenewTimeout: 400 * ms, FenceMargin: 500 * ms, EtcdHeartbeat: 50 * ms, EtcdElection: 500 * ms}},
		{"lan renew fitted", "timings: {fence_margin: 400ms}\n",
			Timing{Preset: "lan (custom)", LeaseTTL: 2 * time.Second, RenewInterval: 200 * ms, RenewTimeout: 400 * ms, FenceMargin: 400 * ms, EtcdHeartbeat: 50 * ms, EtcdElection: 500 * ms}},
		{"lan renew room", "timings: {lease_ttl: 3s}\n",
			Timing{Preset: "lan (custom)", LeaseTTL: 3 * time.Second, RenewInterval: 250 * ms, RenewTimeout: 400 * ms, FenceMargin: 300 * ms, EtcdHeartbeat: 50 * ms, EtcdElection: 500 * ms}},
		{"lan renew written", "timings: {renew_interval: 120ms, fence_margin: 400ms}\n",
			Timing{Preset: "lan (custom)", LeaseTTL: 2 * time.Second, RenewInterval: 120 * ms, RenewTimeout: 400 * ms, FenceMargin: 400 * ms, EtcdHeartbeat: 50 * ms, EtcdElection: 500 * ms}},
		{"wan overrides", "timing: wan\ntimings:\n  etcd_heartbeat: 100ms\n  etcd_election: 1s\n  renew_interval: 500ms\n",
			Timing{Preset: "wan (custom)", LeaseTTL: 10 * time.Second, RenewInterval: 500 * ms, RenewTimeout: time.Second, FenceMargin: 2 * time.Second, EtcdHeartbeat: 100 * ms, EtcdElection: time.Second}},
		{"empty timings is no override", "timings: {}\n", Timing{Preset: "lan", LeaseTTL: 2 * time.Second, RenewInterval: 250 * ms, RenewTimeout: 400 * ms, FenceMargin: 300 * ms, EtcdHeartbeat: 50 * ms, EtcdElection: 500 * ms}},
		{"lan-fast", "timing: lan-fast\n", Timing{Preset: "lan-fast", LeaseTTL: time.Second, RenewInterval: 50 * ms, RenewTimeout: 200 * ms, FenceMargin: 200 * ms, EtcdHeartbeat: 10 * ms, EtcdElection: 100 * ms}},
		{"lan-fast with a VIP", "timing: lan-fast\nvip: {address: 10.0.0.100/24, interface: eth0}\n", Timing{Preset: "lan-fast", LeaseTTL: time.Second, RenewInterval: 50 * ms, RenewTimeout: 200 * ms, FenceMargin: 200 * ms, EtcdHeartbeat: 10 * ms, EtcdElection: 100 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, "haven.yaml", threeNodes+tt.extra)
			if c.Timing != tt.want {
				t.Errorf("Timing = %+v, want %+v", c.Timing, tt.want)
			}
			if c.Hooks.OnDemote.Timeout != tt.want.FenceMargin/2 {
				t.Errorf("on_demote timeout = %s, want fence_margin/2 = %s", c.Hooks.OnDemote.Timeout, tt.want.FenceMargin/2)
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(*Config) error
	}{
		{"one node", "cluster: a\ndata_dir: /d\nnodes: [{name: a, api: 'h:1', peer: 'h:2', client: 'h:3'}]\n", nil},
		{"five nodes with two witnesses", threeNodes + `  - {name: n3, api: 127.0.0.1:7104, peer: 127.0.0.1:7204, client: 127.0.0.1:7304}
  - {name: w2, witness: true, peer: 127.0.0.1:7205, client: 127.0.0.1:7305}
`, nil},
		{"signal without prefix, lower case", threeNodes + "service: {stop_signal: hup}\n", func(c *Config) error {
			if c.Service.StopSignal != "SIGHUP" {
				return fmt.Errorf("StopSignal = %q", c.Service.StopSignal)
			}
			return nil
		}},
		{"empty command is externally managed", threeNodes + "service: {command: []}\n", func(c *Config) error {
			if c.Service.Command != nil {
				return fmt.Errorf("Command = %q", c.Service.Command)
			}
			return nil
		}},
		{"check timeout defaults to interval below 1s", threeNodes + "checks: [{tcp: {address: 'h:1'}, interval: 300ms}]\n", func(c *Config) error {
			if c.Checks[0].Timeout != 300*ms {
				return fmt.Errorf("Timeout = %s", c.Checks[0].Timeout)
			}
			return nil
		}},
		{"aliases", "cluster: demo\ndata_dir: /d\n" +
			"nodes:\n  - &n {name: a, api: 'h:1', peer: 'h:2', client: 'h:3', env: &e {A: b}}\n  - {name: b, api: 'h:4', peer: 'h:5', client: 'h:6', env: *e}\n  - {name: c, witness: true, peer: 'h:7', client: 'h:8'}\n",
			func(c *Config) error {
				if c.Nodes[1].Env["A"] != "b" {
					return fmt.Errorf("env via alias = %v", c.Nodes[1].Env)
				}
				return nil
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, "haven.yaml", tt.text)
			if tt.check != nil {
				if err := tt.check(c); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestParseErrors feeds malformed files and looks for one problem with the
// given line, field and phrase in its message.
func TestParseErrors(t *testing.T) {
	r := strings.NewReplacer // r(old, new).Replace(threeNodes) edits the base file
	tests := []struct {
		name   string
		text   string
		line   int
		field  string
		phrase string
	}{
		// The file as a whole.
		{"empty file", "", 1, "", "the file is empty"},
		{"only comments", "# nothing\n", 1, "", "the file is empty"},
		{"syntax error", "cluster: demo\nnodes: [a,\n", 2, "", "invalid YAML"},
		{"bad indentation", "cluster: demo\n  data_dir: x\n", 2, "", "invalid YAML"},
		{"top level is a list", "- cluster: demo\n", 1, "", "must be a mapping"},
		{"top level is a string", "hello\n", 1, "", "must be a mapping"},
		{"two documents", threeNodes + "---\ncluster: x\n", 16, "", "second YAML document"},

		// Keys.
		{"unknown top-level key", threeNodes + "clusters: x\n", 16, "clusters", `unknown field "clusters"; allowed: cluster, mode`},
		{"unknown timings key", threeNodes + "timings:\n  lease: 2s\n", 17, "timings.lease", `unknown field "lease"; allowed: lease_ttl, renew_interval, renew_timeout, fence_margin, etcd_heartbeat, etcd_election`},
		{"unknown node key", r("    witness: true\n", "    witness: true\n    role: voter\n").Replace(threeNodes), 14, "nodes[2].role", `unknown field "role"`},
		{"unknown check key", threeNodes + "checks:\n  - tcp: {address: 'h:1', port: 3}\n", 17, "checks[0].tcp.port", `unknown field "port"; allowed: address`},
		{"duplicate top-level key", threeNodes + "cluster: other\n", 16, "cluster", "duplicate key \"cluster\" (first on line 1)"},
		{"duplicate node key", r("    api: 127.0.0.1:7101\n", "    api: 127.0.0.1:7101\n    api: 127.0.0.1:7109\n").Replace(threeNodes), 6, "nodes[0].api", "duplicate key"},
		{"duplicate env key", threeNodes + "service:\n  env:\n    A: 1\n    A: 2\n", 19, "service.env.A", "duplicate key"},

		// Types.
		{"nodes is a string", "cluster: demo\ndata_dir: /d\nnodes: n1\n", 3, "nodes", "must be a list of nodes"},
		{"node is a string", "cluster: demo\ndata_dir: /d\nnodes:\n  - n1\n", 4, "nodes[0]", "must be a mapping"},
		{"command is a string", threeNodes + "service:\n  command: /usr/bin/x --flag\n", 17, "service.command", "must be a list of arguments"},
		{"command item is a list", threeNodes + "service:\n  command: [a, [b]]\n", 17, "service.command[1]", "must be a single value"},
		{"cluster is a list", r("cluster: demo", "cluster: [demo]").Replace(threeNodes), 1, "cluster", "must be a single value"},
		{"witness not a bool", r("witness: true", "witness: maybe").Replace(threeNodes), 13, "nodes[2].witness", "must be true or false"},
		{"env is a list", threeNodes + "service:\n  env: [A=1]\n", 17, "service.env", "must be a mapping of NAME: value"},
		{"bad env name", r("    client: 127.0.0.1:7301\n", "    client: 127.0.0.1:7301\n    env: {1X: a}\n").Replace(threeNodes), 8, "nodes[0].env", `invalid variable name "1X"`},
		{"rise not a number", threeNodes + "checks: [{exec: {command: [x]}, rise: two}]\n", 16, "checks[0].rise", "whole number between 1"},
		{"fall zero", threeNodes + "checks: [{exec: {command: [x]}, fall: 0}]\n", 16, "checks[0].fall", "whole number between 1"},
		{"expect_status out of range", threeNodes + "checks: [{http: {url: 'http://h/', expect_status: 999}}]\n", 16, "checks[0].http.expect_status", "between 100 and 599"},
		{"ca_file on plain http", threeNodes + "checks: [{http: {url: 'http://h/', ca_file: ca.pem}}]\n", 16, "checks[0].http", "apply to https:// URLs"},
		{"empty ca_file", threeNodes + "checks: [{http: {url: 'https://h/', ca_file: ''}}]\n", 16, "checks[0].http.ca_file", "give a file path"},

		// Durations.
		{"unparsable duration", threeNodes + "timings:\n  lease_ttl: 1 second\n", 17, "timings.lease_ttl", `invalid duration "1 second"; use a Go duration such as 1s or 500ms`},
		{"duration without unit", threeNodes + "service: {stop_grace: 5}\n", 16, "service.stop_grace", "use a Go duration"},
		{"negative duration", threeNodes + "hooks: {promote_backoff: -1s}\n", 16, "hooks.promote_backoff", "must be positive"},
		{"zero renew_timeout", threeNodes + "timings: {renew_timeout: 0s}\n", 16, "timings.renew_timeout", "must be positive"},
		{"zero check interval", threeNodes + "checks: [{exec: {command: [x]}, interval: 0ms}]\n", 16, "checks[0].interval", "must be positive"},

		// Enums.
		{"unknown preset", threeNodes + "timing: fast\n", 16, "timing", `invalid value "fast"; allowed: lan, wan`},
		{"unknown lock_delay", threeNodes + "lock_delay: never\n", 16, "lock_delay", `invalid value "never"; allowed: auto, off`},
		{"unsupported mode", threeNodes + "mode: hot-standby\n", 16, "mode", "active-passive, active-active, passive-backup"},
		{"bad standby", threeNodes + "service: {standby: warm}\n", 16, "service.standby", "allowed: hot, cold"},
		{"bad restart", threeNodes + "service: {restart: sometimes}\n", 16, "service.restart", "allowed: always, on-failure, never"},
		{"bad signal", threeNodes + "service: {stop_signal: SIGSTOP}\n", 16, "service.stop_signal", "allowed: SIGTERM, SIGINT"},
		{"bad log level", threeNodes + "log: {level: verbose}\n", 16, "log.level", "allowed: debug, info, warn, error"},
		{"bad log format", threeNodes + "log: {format: xml}\n", 16, "log.format", "allowed: text, json"},
		{"bad containment", threeNodes + "service: {containment: jail}\n", 16, "service.containment", "allowed: auto, cgroup, process-group"},

		// Required fields and names.
		{"missing cluster", r("cluster: demo\n", "").Replace(threeNodes), 1, "cluster", "missing"},
		{"empty cluster value", r("cluster: demo\n", "cluster:\n").Replace(threeNodes), 1, "cluster", "missing"},
		{"bad cluster name", r("cluster: demo", "cluster: Demo_1").Replace(threeNodes), 1, "cluster", "invalid name"},
		{"missing data_dir", r("data_dir: /var/lib/haven\n", "").Replace(threeNodes), 1, "data_dir", "missing"},
		{"missing nodes", "cluster: demo\ndata_dir: /d\n", 1, "nodes", "missing"},
		{"empty nodes", "cluster: demo\ndata_dir: /d\nnodes: []\n", 3, "nodes", "is empty"},
		{"missing node name", r("  - name: n2\n    api", "  - api").Replace(threeNodes), 8, "nodes[1].name", "missing"},
		{"bad node name", r("name: n2", "name: N_2").Replace(threeNodes), 8, "nodes[1].name", "invalid name"},
		{"empty site", r("  - name: n2\n", "  - name: n2\n    site: ''\n").Replace(threeNodes), 9, "nodes[1].site", "is empty; name the node's site"},
		{"long site", r("  - name: n2\n", "  - name: n2\n    site: "+strings.Repeat("x", 33)+"\n").Replace(threeNodes), 9, "nodes[1].site", "33 characters; use a short label of up to 32"},
		{"site with a tab", r("  - name: n2\n", "  - name: n2\n    site: \"dc\\t1\"\n").Replace(threeNodes), 9, "nodes[1].site", "control or invisible character"},
		{"site with a space at the end", r("  - name: n2\n", "  - name: n2\n    site: \"dc1 \"\n").Replace(threeNodes), 9, "nodes[1].site", "starts or ends with a space"},
		{"site is a list", r("  - name: n2\n", "  - name: n2\n    site: [dc1]\n").Replace(threeNodes), 9, "nodes[1].site", "must be a single value"},
		{"duplicate node name", r("name: n2", "name: n1").Replace(threeNodes), 8, "nodes[1].name", `duplicate node name "n1" (also nodes[0] on line 4)`},
		{"missing api", r("    api: 127.0.0.1:7102\n", "").Replace(threeNodes), 8, "nodes[1].api", "missing"},
		{"missing peer", r("    peer: 127.0.0.1:7203\n", "").Replace(threeNodes), 12, "nodes[2].peer", "missing"},
		{"missing client", r("    client: 127.0.0.1:7301\n", "").Replace(threeNodes), 4, "nodes[0].client", "missing"},
		{"duplicate check name", threeNodes + "checks:\n  - {name: a, exec: {command: [x]}}\n  - {name: a, exec: {command: [y]}}\n", 18, "checks[1].name", `duplicate check name "a"`},
		{"check without kind", threeNodes + "checks:\n  - {interval: 1s}\n", 17, "checks[0]", "set exactly one of http, tcp or exec"},
		{"check with two kinds", threeNodes + "checks:\n  - {tcp: {address: 'h:1'}, exec: {command: [x]}}\n", 17, "checks[0]", "sets tcp and exec"},
		{"http without url", threeNodes + "checks: [{http: {expect_status: 200}}]\n", 16, "checks[0].http.url", "missing"},
		{"http url without scheme", threeNodes + "checks: [{http: {url: 'h:1/healthz'}}]\n", 16, "checks[0].http.url", "must start with http://"},
		{"empty program", threeNodes + "hooks: {on_promote: {command: ['', x]}}\n", 16, "hooks.on_promote.command", "the program (first item) is empty"},

		// Addresses.
		{"address without port", r("api: 127.0.0.1:7102", "api: 127.0.0.1").Replace(threeNodes), 9, "nodes[1].api", "write it as host:port"},
		{"port out of range", r("peer: 127.0.0.1:7202", "peer: 127.0.0.1:70000").Replace(threeNodes), 10, "nodes[1].peer", "not a number from 1 to 65535"},
		{"address without host", r("client: 127.0.0.1:7302", "client: :7302").Replace(threeNodes), 11, "nodes[1].client", "the host is missing"},
		{"same address twice", r("client: 127.0.0.1:7303", "client: 127.0.0.1:7101").Replace(threeNodes), 15, "nodes[2].client", "already used by nodes[0].api (line 5)"},
		{"same address in one node", r("client: 127.0.0.1:7302", "client: 127.0.0.1:7202").Replace(threeNodes), 11, "nodes[1].client", "already used by nodes[1].peer"},

		// Voters.
		{"two voters", "cluster: demo\ndata_dir: /d\nnodes:\n  - {name: a, api: 'h:1', peer: 'h:2', client: 'h:3'}\n  - {name: b, api: 'h:4', peer: 'h:5', client: 'h:6'}\n",
			3, "nodes", "two voting members cannot survive the loss of either; add a third vote with a witness (a node with `witness: true`, run with `haven witness`) or use 1 or 3 nodes"},
		{"eight voters", "cluster: demo\ndata_dir: /d\nnodes:\n" + eightNodes(), 3, "nodes", "at most 7 voting members"},
		{"only witnesses", "cluster: demo\ndata_dir: /d\nnodes:\n  - {name: a, witness: true, peer: 'h:2', client: 'h:3'}\n", 3, "nodes", "at least one node must run the service"},

		// Timing rules, as they surface in a file.
		{"lease not whole seconds", threeNodes + "timings: {lease_ttl: 1500ms}\n", 16, "timings.lease_ttl", "lease granularity rule"},
		{"lease below etcd minimum", threeNodes + "timings:\n  etcd_election: 1500ms\n", 17, "timings.etcd_election", "etcd minimum TTL rule: lease_ttl 2s is below 3s"},
		{"election below 5 heartbeats", threeNodes + "timings:\n  etcd_heartbeat: 150ms\n", 17, "timings.etcd_heartbeat", "etcd election rule"},
		{"heartbeat below 10ms", threeNodes + "timings:\n  etcd_heartbeat: 5ms\n", 17, "timings.etcd_heartbeat", "etcd heartbeat rule"},
		{"fence margin not below lease", threeNodes + "timings:\n  fence_margin: 2s\n", 17, "timings.fence_margin", "fence margin rule"},
		{"renew window too small", threeNodes + "timings:\n  renew_interval: 651ms\n", 17, "timings.renew_interval", "renew window rule: 2 × renew_interval + renew_timeout = 1.702s exceeds lease_ttl − fence_margin = 1.7s"},
		{"election longer than the renew window", threeNodes + "timings:\n  etcd_election: 700ms\n", 17, "timings.etcd_election", "election rule: 2 × etcd_election + renew_interval + renew_timeout = 1.9s exceeds lease_ttl − fence_margin = 1.7s"},
		{"demote hook too long", threeNodes + "hooks:\n  on_demote: {command: [x], timeout: 290ms}\n", 17, "hooks.on_demote.timeout", "demote rule"},
		{"check timeout above interval", threeNodes + "checks:\n  - exec: {command: [x]}\n    interval: 100ms\n    timeout: 200ms\n", 19, "checks[0].timeout", "check timeout rule"},
		{"wan lease override below etcd minimum", threeNodes + "timing: wan\ntimings: {lease_ttl: 3s, fence_margin: 1s, renew_interval: 200ms, renew_timeout: 200ms}\n", 17, "timings.lease_ttl", "at least 4s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("haven.yaml", []byte(tt.text))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want an error at line %d", c, tt.line)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is %T, want *Error: %v", err, err)
			}
			if c != nil {
				t.Errorf("Parse returned a Config with an error")
			}
			for _, p := range e.Problems {
				if p.Line == tt.line && p.Field == tt.field && strings.Contains(p.Msg, tt.phrase) {
					want := fmt.Sprintf("haven.yaml:%d: ", tt.line)
					if tt.field != "" {
						want += tt.field + ": "
					}
					if !strings.Contains(err.Error(), want+p.Msg) {
						t.Errorf("Error() = %q, want it to contain %q", err, want+p.Msg)
					}
					return
				}
			}
			t.Errorf("no problem at line %d, field %q containing %q; got:\n%v", tt.line, tt.field, tt.phrase, err)
		})
	}
}

func eightNodes() string {
	var b strings.Builder
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "  - {name: n%d, api: 'h:%d', peer: 'h:%d', client: 'h:%d'}\n", i, 100+i, 200+i, 300+i)
	}
	return b.String()
}

// TestParseCollectsAll checks that problems are all reported, in line order.
func TestParseCollectsAll(t *testing.T) {
	text := `cluster: Demo
data_dir: /d
mode: x
nodes:
  - name: a
    api: h
    peer: h:2
    client: h:2
log: {level: loud}
`
	_, err := Parse("c.yaml", []byte(text))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *Error", err)
	}
	want := []string{
		"c.yaml:1: cluster: ",
		"c.yaml:3: mode: ",
		"c.yaml:6: nodes[0].api: ",
		"c.yaml:8: nodes[0].client: ",
		"c.yaml:9: log.level: ",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestCheckTiming(t *testing.T) {
	// The cases were written against a 1s lease (the lan preset before the
	// election rule raised it to 2s); they test the other rules.
	lan, _ := Preset("lan")
	lan.LeaseTTL, lan.RenewInterval = time.Second, 100*ms
	wan, _ := Preset("wan")
	tests := []struct {
		name   string
		t      Timing
		demote time.Duration
		checks []Check
		want   []string // "field: phrase" for each problem, in order
	}{
		{"lan", lan, 150 * ms, nil, nil},
		{"wan", wan, time.Second, nil, nil},
		{"lan without demote hook", lan, 0, nil, nil},
		{"lease 1.5s", with(lan, func(t *Timing) { t.LeaseTTL = 1500 * ms }), 0, nil, []string{"timings.lease_ttl: lease granularity rule"}},
		{"lease 500ms", with(lan, func(t *Timing) {
			t.LeaseTTL = 500 * ms
			t.FenceMargin = 100 * ms
			t.RenewInterval = 50 * ms
			t.RenewTimeout = 50 * ms
		}), 0, nil,
			[]string{"timings.lease_ttl: lease granularity rule", "timings.lease_ttl: etcd minimum TTL rule"}},
		{"election 700ms needs 2s lease", with(lan, func(t *Timing) { t.EtcdElection = 700 * ms }), 0, nil, []string{"timings.lease_ttl: below 2s"}},
		{"election 666ms fits 1s lease", with(lan, func(t *Timing) { t.EtcdElection = 666 * ms }), 0, nil, nil},
		{"heartbeat 9ms", with(lan, func(t *Timing) { t.EtcdHeartbeat = 9 * ms; t.EtcdElection = 100 * ms }), 0, nil, []string{"timings.etcd_heartbeat: etcd heartbeat rule"}},
		{"heartbeat not whole ms", with(lan, func(t *Timing) { t.EtcdHeartbeat = 50*ms + 500*time.Microsecond }), 0, nil, []string{"timings.etcd_heartbeat: whole milliseconds"}},
		{"election 4 heartbeats", with(lan, func(t *Timing) { t.EtcdElection = 200 * ms }), 0, nil, []string{"timings.etcd_election: 5 × etcd_heartbeat"}},
		{"election exactly 5 heartbeats", with(lan, func(t *Timing) { t.EtcdElection = 250 * ms }), 0, nil, nil},
		{"election above 50s", with(wan, func(t *Timing) { t.EtcdElection = 51 * time.Second; t.LeaseTTL = 80 * time.Second }), 0, nil, []string{"timings.etcd_election: the most etcd accepts"}},
		{"fence margin equals lease", with(lan, func(t *Timing) { t.FenceMargin = time.Second }), 0, nil, []string{"timings.fence_margin: fence margin rule"}},
		{"renew window exactly full", with(lan, func(t *Timing) { t.RenewInterval = 250 * ms; t.RenewTimeout = 200 * ms }), 0, nil, nil},
		{"renew window overflows", with(lan, func(t *Timing) { t.RenewInterval = 250 * ms; t.RenewTimeout = 201 * ms }), 0, nil, []string{"timings.renew_interval: renew window rule: 2 × renew_interval + renew_timeout = 701ms exceeds lease_ttl − fence_margin = 700ms"}},
		{"demote exactly fits", lan, 280 * ms, nil, nil},
		{"demote 1ms too long", lan, 281 * ms, nil, []string{"timings.fence_margin: demote rule: fence_margin 300ms is less than the on_demote timeout 281ms + clock drift allowance 20ms"}},
		{"drift alone", with(lan, func(t *Timing) { t.FenceMargin = 19 * ms }), 0, nil, []string{"timings.fence_margin: raise fence_margin to at least 20ms"}},
		{"check timeout equals interval", lan, 0, []Check{{Interval: time.Second, Timeout: time.Second}}, nil},
		{"check timeout above interval", lan, 0, []Check{{Interval: time.Second, Timeout: time.Second}, {Interval: time.Second, Timeout: 2 * time.Second}},
			[]string{"checks[1].timeout: check timeout rule"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkTiming(tt.t, tt.demote, tt.checks, false) // the election rule has its own test
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				field, phrase, _ := strings.Cut(w, ": ")
				if got[i].Field != field || !strings.Contains(got[i].Msg, phrase) {
					t.Errorf("problem %d = %s: %s; want %s: ...%s...", i, got[i].Field, got[i].Msg, field, phrase)
				}
			}
		})
	}
}

func TestWorstCase(t *testing.T) {
	lan, _ := Preset("lan")
	wan, _ := Preset("wan")
	lanFast, _ := Preset("lan-fast")
	checks := []Check{
		{Interval: 100 * ms, Timeout: 100 * ms, Fall: 3}, // 400ms
		{Interval: 500 * ms, Timeout: 200 * ms, Fall: 1}, // 700ms
	}
	tests := []struct {
		name   string
		t      Timing
		checks []Check
		want   WorstCase
	}{
		{"lan", lan, checks, WorstCase{
			ServiceCrash:    200 * ms,
			Unhealthy:       700*ms + 200*ms,
			AgentLoss:       2*time.Second + 200*ms,
			AgentLossLeader: 1500*ms + 2*time.Second + 200*ms,
			FenceAfter:      1700 * ms,
		}},
		{"lan-fast without checks", lanFast, nil, WorstCase{
			ServiceCrash:    40 * ms,
			AgentLoss:       time.Second + 40*ms,
			AgentLossLeader: 300*ms + time.Second + 40*ms,
			FenceAfter:      800 * ms,
		}},
		{"wan without checks", wan, nil, WorstCase{
			ServiceCrash:    time.Second,
			AgentLoss:       10*time.Second + time.Second,
			AgentLossLeader: 7500*ms + 10*time.Second + time.Second,
			FenceAfter:      8 * time.Second,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.t.WorstCase(tt.checks); got != tt.want {
				t.Errorf("WorstCase = %+v, want %+v", got, tt.want)
			}
		})
	}
	// An external etcd revokes expired leases on its 500 ms tick only: its
	// API tells no expiry finer than a second (TestTimeToLiveIsNoExpiry).
	got := lan.WorstCaseOn(nil, BackendEtcd)
	if want := 2*time.Second + 500*ms + 200*ms; got.AgentLoss != want {
		t.Errorf("external etcd: AgentLoss = %v, want %v", got.AgentLoss, want)
	}
}

// TestDescribeExternalEtcdKeepsTheTick: config check says that an external
// etcd keeps its 500 ms revoke tick (no etcd API tells a lease's expiry
// finer than a second, TestTimeToLiveIsNoExpiry), and the embedded one
// does not.
func TestDescribeExternalEtcdKeepsTheTick(t *testing.T) {
	nodes := "nodes:\n  - {name: n1, api: 127.0.0.1:7101, backend: 127.0.0.1:8101}\n  - {name: n2, api: 127.0.0.1:7102, backend: 127.0.0.1:8102}\n"
	ext := mustParse(t, "/etc/haven.yaml", "cluster: c\ninsecure: true\ndata_dir: /tmp/x\nservice: {command: [sleep, '1000']}\nstore: {backend: etcd, endpoints: ['127.0.0.1:2379']}\n"+nodes).Describe()
	for _, want := range []string{"lease_ttl + 500ms lease revoke tick", "lessor's own 500ms tick: haven cannot revoke at expiry there"} {
		if !strings.Contains(ext, want) {
			t.Errorf("config check on an external etcd does not say %q:\n%s", want, ext)
		}
	}
	data, err := os.ReadFile(filepath.Join("testdata", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if emb := mustParse(t, "/etc/haven.yaml", string(data)).Describe(); strings.Contains(emb, "500ms lease revoke tick") || strings.Contains(emb, "500ms tick") {
		t.Errorf("config check on the embedded etcd counts a 500ms tick:\n%s", emb)
	}
}

func TestDescribeGolden(t *testing.T) {
	for _, name := range []string{"full", "minimal"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name+".yaml")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Parse, not Load, so the output does not depend on where the
			// repository is checked out.
			got := mustParse(t, path, string(data)).Describe()
			golden := filepath.Join("testdata", name+".describe")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Describe() differs from %s (run go test -update to rewrite it):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "haven.yaml")
	text := strings.Replace(threeNodes, "data_dir: /var/lib/haven", "data_dir: state", 1)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "state"); c.DataDir != want {
		t.Errorf("DataDir = %q, want %q", c.DataDir, want)
	}
	if c.Path != path {
		t.Errorf("Path = %q, want %q", c.Path, path)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/full.yaml", "testdata/minimal.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "---", "~", "[]", "{}", "a: b", "nodes: *x", "nodes: &a [*a]",
		"cluster: demo\nnodes: [a,\n",
		threeNodes + "checks: [{http: {url: x}, tcp: {}, exec: {command: ''}}]\n",
		threeNodes + "timings: {lease_ttl: 0s, etcd_heartbeat: 1ns, etcd_election: 1ns}\n",
		threeNodes + "<<: {cluster: x}\n",
		"? [a]\n: b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v; want exactly one", c != nil, err)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("error %v is not a non-empty *Error", err)
			}
			return
		}
		_ = c.Describe()
	})
}

// withOpsDefaults fills the defaults of the operations settings.
func withOpsDefaults(c *Config) {
	for i := range c.Nodes {
		if c.Nodes[i].Priority == 0 {
			c.Nodes[i].Priority = 100
		}
	}
	if c.Preempt.Delay == 0 {
		c.Preempt.Delay = 30 * time.Second
	}
	c.APIAuth.StatusOpen = true
	if c.OutagePolicy == "" {
		c.OutagePolicy = "demote"
	}
	if c.LockDelay == "" {
		c.LockDelay = LockDelayAuto
	}
}

// TestFourVotersAllowed: an even count is a step of a membership change.
func TestFourVotersAllowed(t *testing.T) {
	c := mustParse(t, "haven.yaml", threeNodes+"  - {name: n4, api: 'h:1', peer: 'h:2', client: 'h:3'}\n")
	if len(c.Nodes) != 4 {
		t.Fatalf("got %d nodes", len(c.Nodes))
	}
}

// TestElectionRule: the renew window must outlast an etcd leader election.
func TestElectionRule(t *testing.T) {
	lan, _ := Preset("lan")
	wan, _ := Preset("wan")
	for _, tc := range []struct {
		name string
		t    Timing
		etcd bool
		want bool // a problem expected
	}{
		{"lan preset", lan, true, false},
		{"wan preset", wan, true, false},
		{"1s lease with a 500ms election", with(lan, func(t *Timing) { t.LeaseTTL = time.Second }), true, true},
		{"same on a SQL store", with(lan, func(t *Timing) { t.LeaseTTL = time.Second }), false, false},
		{"2s lease with a 800ms election", with(lan, func(t *Timing) { t.EtcdElection = 800 * time.Millisecond; t.LeaseTTL = 2 * time.Second }), true, true},
	} {
		got := false
		for _, p := range checkTiming(tc.t, 0, nil, tc.etcd) {
			if strings.HasPrefix(p.Msg, "election rule") {
				got = true
			}
		}
		if got != tc.want {
			t.Errorf("%s: election rule problem = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func with(t Timing, f func(*Timing)) Timing { f(&t); return t }
