package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/store/memstore"
)

const httpToken = "node-http-test-token-0123456789"

// handlerCluster is agents n1 and n2 (and witness w) of a config with extra
// YAML, on one in-memory store, each behind the handler RunNode serves
// (httpHandler with apiOptions); run starts their agents.
type handlerCluster struct {
	t       *testing.T
	cfg     *config.Config
	store   *memstore.Server
	agents  map[string]*agent.Agent
	handler map[string]http.Handler
	conns   map[string]*memstore.Client // each agent's connection to store
}

func newHandlerCluster(t *testing.T, extra string) *handlerCluster {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`cluster: web
data_dir: %s
insecure: true
api: {token: %s}
dashboard: {users: [{name: alice, role: viewer, password_hash: "$2a$04$ZQ4v3ZJY7uM0n6rQ5b4QyO0o1vS5Qm5c1m8lT1bQm0mXW0vHq3Y2a"}]}
%snodes:
  - {name: n1, api: '127.0.0.1:1', peer: '127.0.0.1:2', client: '127.0.0.1:3', backend: '10.0.0.1:8080'}
  - {name: n2, api: '127.0.0.1:4', peer: '127.0.0.1:5', client: '127.0.0.1:6', backend: '10.0.0.2:8080'}
  - {name: w, peer: '127.0.0.1:7', client: '127.0.0.1:8', witness: true}
`, filepath.Join(dir, "data"), httpToken, extra)
	cfg, err := config.Parse(filepath.Join(dir, "haven.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c := &handlerCluster{t: t, cfg: cfg, store: memstore.New(clock.Real{}), agents: map[string]*agent.Agent{}, handler: map[string]http.Handler{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, n := range cfg.Nodes {
		if n.Witness {
			continue
		}
		for _, d := range []string{filepath.Join(cfg.DataDir, n.Name), agent.LogDir(cfg, n.Name)} {
			if err := os.MkdirAll(d, 0o700); err != nil { // RunNode makes them
				t.Fatal(err)
			}
		}
		conn := c.store.Client()
		if c.conns == nil {
			c.conns = map[string]*memstore.Client{}
		}
		c.conns[n.Name] = conn
		a, err := agent.New(cfg, n, conn, clock.Real{}, log.With("node", n.Name))
		if err != nil {
			t.Fatal(err)
		}
		h, closeDash := httpHandler(a, apiOptions(cfg, a))
		t.Cleanup(closeDash)
		c.agents[n.Name], c.handler[n.Name] = a, h
	}
	return c
}

// run runs every agent until the test ends.
func (c *handlerCluster) run() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c.t.Cleanup(func() { cancel(); wg.Wait() })
	for _, a := range c.agents {
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Run(ctx) }()
	}
}

// do sends one request to node's handler; token "" sends none.
func (c *handlerCluster) do(node, method, target, token string) *httptest.ResponseRecorder {
	c.t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader("{}"))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	c.handler[node].ServeHTTP(w, r)
	return w
}

// TestHTTPHandlerRedirectsToActive: RunNode's handler sends a user at a
// redirect path to the active node's backend, path and query kept, from
// the active and from a standby alike; the API, /, /ui and the dashboard
// keep their own routes beside it.
func TestHTTPHandlerRedirectsToActive(t *testing.T) {
	t.Parallel()
	c := newHandlerCluster(t, "redirect: {paths: [/app/]}\n")

	// No active yet: retry shortly, not a redirect to nowhere.
	w := c.do("n2", "GET", "/app/page?x=1", "")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("before any active: %d %q (Retry-After %q), want 503 with Retry-After", w.Code, w.Body, w.Header().Get("Retry-After"))
	}

	c.run()
	var active string
	deadline := time.Now().Add(30 * time.Second)
	for {
		l := c.store.Leader()
		if a := c.agents[l.Node]; a != nil && a.Serving() && c.agents["n1"].Snapshot().Leader == l && c.agents["n2"].Snapshot().Leader == l {
			active = l.Node
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no active seen by both within 30s: store %v, n1 sees %v, n2 sees %v", l, c.agents["n1"].Snapshot().Leader, c.agents["n2"].Snapshot().Leader)
		}
		time.Sleep(5 * time.Millisecond)
	}
	n, _ := c.cfg.NodeByName(active)
	want := "http://" + n.Backend + "/app/page?x=1"
	for _, node := range []string{"n1", "n2"} {
		w := c.do(node, "GET", "/app/page?x=1", "")
		if w.Code != http.StatusTemporaryRedirect || w.Header().Get("Location") != want {
			t.Errorf("%s: GET /app/page?x=1 = %d to %q, want 307 to %q (%s is active)", node, w.Code, w.Header().Get("Location"), want, active)
		}
	}
	standby := "n1"
	if active == "n1" {
		standby = "n2"
	}

	for _, tc := range []struct {
		method, path string
		code         int
		location     string // for redirects
		body         string // a part of the body
	}{
		{"GET", "/", http.StatusSeeOther, "/ui/", ""},
		{"GET", "/ui", http.StatusSeeOther, "/ui/", ""},
		{"GET", "/ui/", http.StatusOK, "", "<html"},
		{"GET", "/v1/role", http.StatusOK, "", `"node": "` + standby + `"`},
		{"GET", "/status", http.StatusOK, "", `"` + active + `"`},
		{"GET", "/lb-check", http.StatusServiceUnavailable, "", "unavailable"},
		{"GET", "/nowhere", http.StatusNotFound, "", "no such endpoint /nowhere"},
		{"POST", "/app/page", http.StatusMethodNotAllowed, "", "use GET"},
	} {
		w := c.do(standby, tc.method, tc.path, "")
		if w.Code != tc.code || w.Header().Get("Location") != tc.location || !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("%s (standby): %s %s = %d to %q, body %.80q; want %d to %q with %q", standby, tc.method, tc.path, w.Code, w.Header().Get("Location"), w.Body, tc.code, tc.location, tc.body)
		}
	}
}

// TestHTTPHandlerNeedsToken: RunNode's handler refuses operator calls and
// the logs without the configured token, and writes the refusal to the
// node's audit log; with the token, the logs answer.
func TestHTTPHandlerNeedsToken(t *testing.T) {
	t.Parallel()
	c := newHandlerCluster(t, "")
	for _, tc := range []struct{ method, path, token string }{
		{"POST", "/v1/switchover", ""},
		{"POST", "/v1/switchover", "wrong-token-0123456789"},
		{"POST", "/v1/maintenance", ""},
		{"POST", "/v1/members", ""},
		{"GET", "/v1/logs", ""},
		{"GET", "/v1/logs", "wrong-token-0123456789"},
	} {
		w := c.do("n2", tc.method, tc.path, tc.token)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s %s with token %q = %d %q, want 401", tc.method, tc.path, tc.token, w.Code, w.Body)
		}
	}
	if err := os.WriteFile(filepath.Join(agent.LogDir(c.cfg, "n2"), "agent.log"), []byte("a line of n2's log\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if w := c.do("n2", "GET", "/v1/logs", httpToken); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "a line of n2's log") {
		t.Errorf("GET /v1/logs with the token = %d %q, want 200 and n2's log", w.Code, w.Body)
	}
	audit, err := os.ReadFile(filepath.Join(c.cfg.DataDir, "n2", "audit.log"))
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	if n := strings.Count(string(audit), `"action":"switchover"`); n != 2 || !strings.Contains(string(audit), `"status":401`) {
		t.Errorf("audit log has %d refused switchovers, want 2:\n%s", n, audit)
	}
}

// TestHTTPHandlerRedirectTo: with redirect.to, users go to that base URL
// (a load balancer) whether or not any node is active.
func TestHTTPHandlerRedirectTo(t *testing.T) {
	t.Parallel()
	c := newHandlerCluster(t, "redirect: {paths: [/app/, /login], to: 'https://app.example.com/'}\n")
	for path, want := range map[string]string{
		"/app/x?y=2": "https://app.example.com/app/x?y=2",
		"/login":     "https://app.example.com/login",
	} {
		w := c.do("n1", "GET", path, "")
		if w.Code != http.StatusTemporaryRedirect || w.Header().Get("Location") != want {
			t.Errorf("GET %s = %d to %q, want 307 to %q", path, w.Code, w.Header().Get("Location"), want)
		}
	}
}
