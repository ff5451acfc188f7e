package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/ports"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// memToken is the API token of a memCluster that serves its APIs.
const memToken = "mem-cluster-token-0123456789"

// memAPIYAML is what a memCluster with APIs adds to its config: a token,
// and plain HTTP on loopback (TLS is tested in tls_test.go and e2e).
const memAPIYAML = "api: {token: " + memToken + "}\ninsecure: true\n"

// memAPI serves the in-process agents' HTTP APIs on loopback ports with
// the handler RunNode serves, so that a test calls them with api.Client
// as the CLI does: what the e2e tests do with processes, without them.
type memAPI struct {
	c      *memCluster
	client *api.Client
	mu     sync.Mutex
	srv    map[string]*http.Server
}

// apiPorts gives node i its API port: free loopback ports when the APIs
// are served, otherwise numbers nobody listens on.
func apiPorts(t *testing.T, n int, real bool) func(i int) int {
	if !real {
		return func(i int) int { return 1 + 3*i }
	}
	ps, err := ports.Free(n)
	if err != nil {
		t.Fatal(err)
	}
	return func(i int) int { return ps[i-1] }
}

func newMemAPI(c *memCluster) *memAPI {
	m := &memAPI{c: c, srv: map[string]*http.Server{},
		client: api.NewClient(api.ClientOptions{Token: memToken, Who: "test", Timeout: 20 * time.Second})}
	c.t.Cleanup(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for name := range m.srv {
			m.closeLocked(name)
		}
	})
	return m
}

// serve starts node name's API.
func (m *memAPI) serve(name string, a *Agent) {
	m.c.t.Helper()
	cfg := a.cfg
	if err := os.MkdirAll(LogDir(cfg, name), 0o700); err != nil { // RunNode's logs make it
		m.c.t.Fatal(err)
	}
	// What node.httpHandler serves, without the dashboard (package node
	// imports agent, so these tests cannot use it).
	o := api.Options{Token: cfg.APIAuth.Token, StatusOpen: cfg.APIAuth.StatusOpen, Audit: a.Audit,
		RedirectPaths: cfg.Redirect.Paths, RedirectTarget: a.RedirectTarget}
	mux := http.NewServeMux()
	mux.Handle("/v1/logs", api.LogsHandler(a, o))
	mux.Handle("/", api.Handler(a, a, o))
	handler, closeDash := mux, func() {}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ln, err = net.Listen("tcp", a.node.API); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		m.c.t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(closeDash)
	m.mu.Lock()
	m.srv[name] = srv
	m.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.c.t.Errorf("%s's api: %v", name, err)
		}
	}()
}

func (m *memAPI) close(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closeLocked(name)
}

func (m *memAPI) closeLocked(name string) {
	if srv := m.srv[name]; srv != nil {
		_ = srv.Close()
		delete(m.srv, name)
	}
}

// addr is node name's API address.
func (c *memCluster) addr(name string) string {
	n, _ := c.cfg.NodeByName(name)
	return n.API
}

// view is node name as from's agent shows it in /status (zero if from
// does not answer).
func (c *memCluster) view(from, name string) api.NodeView {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.api.client.Status(ctx, c.addr(from))
	if err != nil {
		return api.NodeView{}
	}
	for _, v := range st.Nodes {
		if v.Name == name {
			return v
		}
	}
	return api.NodeView{}
}

// lbCheck is node name's /lb-check answer over HTTP.
func (c *memCluster) lbCheck(name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, _ := c.api.client.LBCheck(ctx, c.addr(name))
	return ok
}

// kill ends node name as kill -9 would, as far as the others can tell:
// its API stops answering and nothing it sends reaches the store any more,
// so its session (and the key, if it holds it) expires with the lease.
func (c *memCluster) kill(name string) {
	if c.api != nil {
		c.api.close(name)
	}
	c.conns[name].SetFault(memstore.Fault{Partitioned: true})
	c.stop[name]()
}

// waitHealthy waits until from's view shows every node healthy, up and
// eligible or holding the role.
func (c *memCluster) waitHealthy(from string) {
	c.t.Helper()
	waitFor(c.t, 20*time.Second, "every node healthy", func() bool {
		for _, n := range c.cfg.Nodes {
			v := c.view(from, n.Name)
			if !v.Healthy || v.Role == ha.RoleDown || v.Role == ha.RoleStarting || v.Role == "" {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond every few ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
