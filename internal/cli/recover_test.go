package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRecoverFromSoleSurvivor loses two of three members for good: n1
// stops first, a switchover then issues an epoch n1 never sees, n2 and n3
// stop and their data is deleted. `haven recover` rebuilds the cluster from
// n1 alone, and n1 serves again at an epoch above every one issued before.
func TestRecoverFromSoleSurvivor(t *testing.T) {
	dir := t.TempDir()
	var nodes strings.Builder
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&nodes, "  - {name: n%d, api: %s, peer: %s, client: %s}\n", i, freeTCP(t), freeTCP(t), freeTCP(t))
	}
	cfgPath := filepath.Join(dir, "haven.yaml")
	text := fmt.Sprintf(`cluster: recover
data_dir: %s
timing: lan
timings: {lease_ttl: 3s, renew_interval: 200ms, renew_timeout: 600ms, fence_margin: 500ms, etcd_heartbeat: 50ms, etcd_election: 500ms}
api: {token: recover-test-token-0123456789}
insecure: true   # in-process agents on loopback; TLS is tested elsewhere
nodes:
%sservice: {command: [sleep, "3600"], stop_grace: 1s}
`, filepath.Join(dir, "data"), nodes.String())
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
	// The commands are called without Main, which sets agent.Version:
	// the agents here run in this process.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	running := map[string]func(){}
	start := func(name string) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = agent.RunNode(ctx, cfg, name, log) }()
		running[name] = func() { cancel(); <-done }
	}
	t0 := time.Now()
	stop := func(name string) {
		running[name]()
		delete(running, name)
		t.Logf("%v: %s stopped", time.Since(t0), name)
	}
	defer func() {
		for name := range running {
			stop(name)
		}
	}()
	// waitActive waits until one of names is active and returns its epoch.
	waitActive := func(names ...string) (string, ha.Epoch) {
		t.Helper()
		var addrs []string
		for _, n := range names {
			nc, _ := cfg.NodeByName(n)
			addrs = append(addrs, nc.API)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		st, err := waitForLeader(ctx, ops.api, addrs, 60*time.Second)
		if err != nil {
			t.Fatalf("no active among %v: %v", names, err)
		}
		t.Logf("%v: %s active at epoch %d", time.Since(t0), st.Leader.Node, st.Leader.Epoch)
		return st.Leader.Node, st.Leader.Epoch
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		start(n)
	}
	waitActive("n1", "n2", "n3")
	// Wait until every agent's monitor has judged redundancy intact, so
	// that losing n1 is a change whoever is active then records.
	intact := func() bool {
		for _, n := range cfg.Nodes {
			resp, err := http.Get("http://" + n.API + "/metrics")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), "\nhaven_cluster_degraded 0\n") {
				return false
			}
		}
		return true
	}
	for end := time.Now().Add(60 * time.Second); !intact(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the agents never judged redundancy intact (haven_cluster_degraded 0)")
		}
	}
	// A backup first: an etcd snapshot of the store.
	snap := filepath.Join(dir, "backup.db")
	var sout, serr bytes.Buffer
	if code := runStore([]string{"snapshot", "save", "--config", cfgPath, snap}, &sout, &serr); code != exitOK || !strings.Contains(sout.String(), "saved") {
		t.Fatalf("store snapshot save: exit %d: %s%s", code, sout.String(), serr.String())
	}
	if fi, err := os.Stat(snap); err != nil || fi.Size() < 4096 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v %v", fi, err)
	}
	stop("n1")
	_, before := waitActive("n2", "n3")
	// A switchover issues an epoch n1 never sees. Retried: on a loaded
	// machine the standby may not be eligible yet.
	var out, errw bytes.Buffer
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		errw.Reset()
		if code := runSwitchover([]string{"--config", cfgPath}, &out, &errw); code == exitOK {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("switchover: %s", errw.String())
		}
	}
	_, issued := waitActive("n2", "n3")
	for end := time.Now().Add(30 * time.Second); issued <= before; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("after the switchover the epoch is still %d", issued)
		}
		_, issued = waitActive("n2", "n3")
	}
	// With n1 gone the active records that redundancy is lost.
	degradedEvent := func() bool {
		var evs []ha.Event
		if err := ops.getAny(func(addr string) (err error) {
			evs, err = ops.api.Events(context.Background(), addr, 200)
			return err
		}); err != nil {
			return false
		}
		for _, e := range evs {
			if e.Kind == "redundancy" && e.To == "degraded" && strings.Contains(e.Reason, "n1") {
				return true
			}
		}
		return false
	}
	for end := time.Now().Add(30 * time.Second); !degradedEvent(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("no redundancy event (to degraded, naming n1) in the history after n1 stopped")
		}
	}
	// Both at once: each waits for its store, which has lost its quorum.
	stopping := make(chan struct{})
	go func() { running["n3"](); close(stopping) }()
	stop("n2")
	<-stopping
	delete(running, "n3")
	for _, n := range []string{"n2", "n3"} {
		if err := os.RemoveAll(filepath.Join(cfg.DataDir, n)); err != nil {
			t.Fatal(err)
		}
	}

	out.Reset()
	if code := runRecover([]string{"--config", cfgPath, "--node", "n1"}, &out, &errw); code != exitOK || !strings.Contains(out.String(), "--yes") {
		t.Fatalf("recover without --yes: exit %d\n%s%s", code, out.String(), errw.String())
	}
	if code := runRecover([]string{"--config", cfgPath, "--node", "n2", "--yes"}, &out, &errw); code != exitUsage {
		t.Fatalf("recover from a node without data: exit %d, want 2", code)
	}
	out.Reset()
	errw.Reset()
	if code := runRecover([]string{"--config", cfgPath, "--node", "n1", "--yes"}, &out, &errw); code != exitOK {
		t.Fatalf("recover: exit %d\n%s%s", code, out.String(), errw.String())
	}
	start("n1")
	who, after := waitActive("n1")
	for end := time.Now().Add(30 * time.Second); who != "n1" && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		who, after = waitActive("n1")
	}
	if who != "n1" || after <= issued {
		t.Fatalf("after recovery %s is active at epoch %d; want n1 above %d, the last epoch issued before", who, after, issued)
	}
	var evs []ha.Event
	if err := ops.getAny(func(addr string) (err error) {
		evs, err = ops.api.Events(context.Background(), addr, 100)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		found = found || e.Kind == "recover"
	}
	if !found {
		t.Error("no recover event in the history")
	}
	// The survivor's status now says the others are gone: degraded.
	nc, _ := cfg.NodeByName("n1")
	st, err := fetchStatus(context.Background(), ops.api, []string{nc.API})
	if err != nil {
		t.Fatal(err)
	}
	if r := clusterHealth(st); r.State != "degraded" {
		t.Errorf("redundancy after recovery = %s, want degraded (n2 and n3 gone): %v", r.State, r.Reasons)
	}
}
