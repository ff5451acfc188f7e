package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/ports"
)

func freeTCP(t *testing.T) string {
	t.Helper()
	// From package ports: a :0 port closed again goes back to the kernel's
	// pool and came back twice in one config in CI ("already used by").
	p, err := ports.Free(1)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p[0])
}

// TestRecoverFromSoleSurvivor loses two of three members for good: n1
// stops first, a switchover then issues an epoch n1 never sees, n2 and n3
// stop and their data is deleted. `haven recover` rebuilds the cluster from
// n1 alone, and n1 serves again at an epoch above every one issued before.
func TestRecoverFromSoleSurvivor(t *testing.T) {
	c := newTestCluster(t, "recover")
	cfg, cfgPath, ops, dir := c.cfg, c.cfgPath, c.ops, c.dir
	start, stop, waitActive := c.start, c.stop, c.waitActive
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
	// A switchover issues an epoch n1 never sees.
	c.switchover()
	_, issued := c.waitActiveAbove(before, "n2", "n3")
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
	c.stopAll()
	for _, n := range []string{"n2", "n3"} {
		if err := os.RemoveAll(filepath.Join(cfg.DataDir, n)); err != nil {
			t.Fatal(err)
		}
	}

	var out, errw bytes.Buffer
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
	if !hasEvent(c.events(), "recover") {
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
