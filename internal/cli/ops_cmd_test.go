package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/haven-ha/haven/internal/api"
)

// fakeAgents are three agents' APIs that answer operator calls the way
// the agent does (internal/agent/ops_cluster_test.go tests the agent's
// side on real in-process agents), recording what the CLI sent. n1 is
// active and healthy.
type fakeAgents struct {
	cfgPath string
	mu      sync.Mutex
	calls   []string // "node /v1/path body"
}

func newFakeAgents(t *testing.T) *fakeAgents {
	t.Helper()
	f := &fakeAgents{}
	var nodes strings.Builder
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("n%d", i)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: f.handler(name)}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		fmt.Fprintf(&nodes, "  - {name: %s, api: %s, peer: %s, client: %s}\n", name, ln.Addr(), freeTCP(t), freeTCP(t))
	}
	dir := t.TempDir()
	f.cfgPath = filepath.Join(dir, "haven.yaml")
	text := fmt.Sprintf("cluster: fake\ndata_dir: %s\napi: {token: fake-test-token-0123456789}\ninsecure: true\nnodes:\n%s", dir, nodes.String())
	if err := os.WriteFile(f.cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeAgents) handler(node string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer fake-test-token-0123456789" {
			api.WriteError(w, http.StatusUnauthorized, "wrong token")
			return
		}
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls = append(f.calls, node+" "+r.URL.Path+" "+strings.TrimSpace(string(body)))
		f.mu.Unlock()
		reply := func(v any) { _ = json.NewEncoder(w).Encode(v) }
		switch r.URL.Path {
		case "/v1/maintenance":
			var req api.MaintenanceRequest
			_ = json.Unmarshal(body, &req)
			res := api.MaintenanceResult{Node: req.Node, On: req.On}
			if req.On && req.Node == "n1" {
				res.Switchover = &api.SwitchoverResult{From: "n1", To: "n2", Epoch: 7}
			}
			reply(res)
		case "/v1/promote":
			var req api.PromoteRequest
			_ = json.Unmarshal(body, &req)
			if !req.Force {
				api.WriteError(w, http.StatusConflict, "the active node n1 is healthy; promoting "+req.Node+" would interrupt it — use `haven switchover --to "+req.Node+"`, or --force")
				return
			}
			reply(api.SwitchoverResult{From: "n1", To: req.Node, Epoch: 8})
		case "/v1/service":
			var req api.ServiceRequest
			_ = json.Unmarshal(body, &req)
			if node == "n1" && req.Action != "start" && !req.Force {
				api.WriteError(w, http.StatusConflict, "n1 is active; stopping its service would interrupt clients — use --force to switch over first")
				return
			}
			res := api.ServiceResult{Node: node, Action: req.Action, PID: 4242}
			if node == "n1" {
				res.Switchover = &api.SwitchoverResult{From: "n1", To: "n2", Epoch: 9}
			}
			reply(res)
		default:
			api.WriteError(w, http.StatusNotFound, "no such path")
		}
	})
}

// last is the last call the agents got.
func (f *fakeAgents) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

// TestOpsCommands: haven maintenance, promote and service send the right
// request to the right agent and say what came back, refusals with the
// agent's reason and exit 1 (the CLI's half of the e2e scenarios that
// moved to internal/agent's in-process tests).
func TestOpsCommands(t *testing.T) {
	f := newFakeAgents(t)
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string // substrings of stdout and stderr
		call     string // the last call's "node path body" prefix
	}{
		{[]string{"maintenance", "--config", f.cfgPath, "on", "n1"}, exitOK, "switched over from n1 to n2 (epoch 7) first\nmaintenance on for n1", "", `n1 /v1/maintenance {"node":"n1","on":true`},
		{[]string{"maintenance", "--config", f.cfgPath, "off", "n1"}, exitOK, "maintenance off for n1", "", `n1 /v1/maintenance {"node":"n1","on":false`},
		{[]string{"maintenance", "--config", f.cfgPath, "on"}, exitUsage, "", "usage: haven maintenance on|off NODE", ""},
		{[]string{"promote", "--config", f.cfgPath, "n2"}, exitFailure, "", "haven promote: the active node n1 is healthy", `n1 /v1/promote {"node":"n2"}`},
		{[]string{"promote", "--config", f.cfgPath, "--force", "n2"}, exitOK, "n2 is active at epoch 8 (before: n1)", "", `n1 /v1/promote {"node":"n2","force":true}`},
		{[]string{"service", "stop", "--config", f.cfgPath, "n2"}, exitOK, "n2: service stop done (pid 4242)", "", `n2 /v1/service {"action":"stop"}`},
		{[]string{"service", "stop", "--config", f.cfgPath, "n1"}, exitFailure, "", "use --force", `n1 /v1/service {"action":"stop"}`},
		{[]string{"service", "start", "--config", f.cfgPath, "n2"}, exitOK, "n2: service start done", "", `n2 /v1/service {"action":"start"}`},
		{[]string{"service", "restart", "--config", f.cfgPath, "--force", "n1"}, exitOK, "n1: service restart done", "", `n1 /v1/service {"action":"restart","force":true}`},
		{[]string{"service", "stop", "--config", f.cfgPath, "w9"}, exitFailure, "", `no node "w9"`, ""},
	} {
		before := f.last()
		code, out, errOut := run(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.err) {
			t.Errorf("haven %s: exit %d, stdout %q, stderr %q; want exit %d, %q in stdout, %q in stderr",
				strings.Join(tc.args, " "), code, out, errOut, tc.code, tc.out, tc.err)
		}
		if got := f.last(); tc.call != "" && !strings.HasPrefix(got, tc.call) || tc.call == "" && got != before {
			t.Errorf("haven %s: the agents got %q; want %q", strings.Join(tc.args, " "), got, tc.call)
		}
	}
}
