package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/node"
)

// testCluster is a three-node cluster on the embedded etcd whose agents run
// in this process, for the tests of the commands that rebuild a cluster
// (recover, snapshot restore). The commands are called without Main, which
// sets agent.Version.
type testCluster struct {
	t       *testing.T
	dir     string
	cfgPath string
	cfg     *config.Config
	ops     *opsClient
	log     *slog.Logger
	running map[string]func()
	t0      time.Time
}

func newTestCluster(t *testing.T, name string) *testCluster {
	t.Helper()
	dir := t.TempDir()
	var nodes strings.Builder
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&nodes, "  - {name: n%d, api: %s, peer: %s, client: %s}\n", i, freeTCP(t), freeTCP(t), freeTCP(t))
	}
	cfgPath := filepath.Join(dir, "haven.yaml")
	text := fmt.Sprintf(`cluster: %s
data_dir: %s
%s
api: {token: %s-test-token-0123456789}
insecure: true   # in-process agents on loopback; TLS is tested elsewhere
nodes:
%sservice: {command: [sleep, "3600"], stop_grace: 1s}
`, name, filepath.Join(dir, "data"), harness.CITimings, name, nodes.String())
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := newOpsClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, dir: dir, cfgPath: cfgPath, cfg: cfg, ops: ops, running: map[string]func(){}, t0: time.Now(),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t.Cleanup(func() {
		for name := range c.running {
			c.stop(name)
		}
	})
	return c
}

func (c *testCluster) start(name string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = node.RunNode(ctx, c.cfg, name, c.log, nil) }()
	c.running[name] = func() { cancel(); <-done }
}

func (c *testCluster) stop(name string) {
	c.running[name]()
	delete(c.running, name)
	c.t.Logf("%v: %s stopped", time.Since(c.t0), name)
}

// stopAll stops the running agents at once: each waits for its store,
// which loses its quorum as the others go.
func (c *testCluster) stopAll() {
	done := make(chan struct{})
	n := 0
	for name, stop := range c.running {
		n++
		go func() { stop(); c.t.Logf("%v: %s stopped", time.Since(c.t0), name); done <- struct{}{} }()
	}
	for ; n > 0; n-- {
		<-done
	}
	c.running = map[string]func(){}
	// An embedded etcd member that lost its quorum may hold its ports a
	// few seconds after its agent returned.
	for _, n := range c.cfg.Nodes {
		for _, addr := range []string{n.API, n.Peer, n.Client} {
			for end := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				ln, err := net.Listen("tcp", addr)
				if err == nil {
					ln.Close()
					break
				}
				if time.Now().After(end) {
					c.t.Fatalf("%s still in use after its agent stopped: %v", addr, err)
				}
			}
		}
	}
}

// waitActive waits until one of names is active and returns it and its epoch.
func (c *testCluster) waitActive(names ...string) (string, ha.Epoch) {
	c.t.Helper()
	var addrs []string
	for _, n := range names {
		nc, _ := c.cfg.NodeByName(n)
		addrs = append(addrs, nc.API)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := waitForLeader(ctx, c.ops.api, addrs, 60*time.Second)
	if err != nil {
		c.t.Fatalf("no active among %v: %v", names, err)
	}
	c.t.Logf("%v: %s active at epoch %d", time.Since(c.t0), st.Leader.Node, st.Leader.Epoch)
	return st.Leader.Node, st.Leader.Epoch
}

// waitActiveAbove waits until one of names is active at an epoch above e.
func (c *testCluster) waitActiveAbove(e ha.Epoch, names ...string) (string, ha.Epoch) {
	c.t.Helper()
	who, got := c.waitActive(names...)
	for end := time.Now().Add(30 * time.Second); got <= e; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			c.t.Fatalf("%s is active at epoch %d, want above %d", who, got, e)
		}
		who, got = c.waitActive(names...)
	}
	return who, got
}

// switchover moves the active role, retried: on a loaded machine the
// standby may not be eligible yet.
func (c *testCluster) switchover() {
	c.t.Helper()
	var out, errw strings.Builder
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		errw.Reset()
		if code := runSwitchover([]string{"--config", c.cfgPath}, &out, &errw); code == exitOK {
			return
		}
		if time.Now().After(end) {
			c.t.Fatalf("switchover: %s", errw.String())
		}
	}
}

// events reads the history from any agent.
func (c *testCluster) events() []ha.Event {
	c.t.Helper()
	var evs []ha.Event
	if err := c.ops.getAny(func(addr string) (err error) {
		evs, err = c.ops.api.Events(context.Background(), addr, 200)
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
	return evs
}

func hasEvent(evs []ha.Event, kind string) bool {
	for _, e := range evs {
		if e.Kind == kind {
			return true
		}
	}
	return false
}
