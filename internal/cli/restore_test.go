package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/storedial"
)

// TestRestoreFromSnapshot saves a snapshot with an alias set, goes on
// (the alias changes, a switchover issues a later epoch), loses every
// member's data, and restores n1 from the snapshot: n1 serves again with
// the snapshot's alias, at an epoch above every one issued before, and the
// history records the restore. A damaged snapshot, a running cluster and
// a data directory in the way are refused.
func TestRestoreFromSnapshot(t *testing.T) {
	c := newTestCluster(t, "restore")
	for _, n := range []string{"n1", "n2", "n3"} {
		c.start(n)
	}
	c.waitActive("n1", "n2", "n3")
	setAlias := func(alias string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := storedial.Open(ctx, c.cfg, config.Node{})
		if err != nil {
			t.Fatal(err)
		}
		defer closeTool(st)
		if err := st.(ha.Properties).SetProps(ctx, "n2", ha.NodeProps{Alias: alias}); err != nil {
			t.Fatal(err)
		}
	}
	setAlias("saved")
	snap := filepath.Join(c.dir, "backup.db")
	var out, errw bytes.Buffer
	if code := runStore([]string{"snapshot", "save", "--config", c.cfgPath, snap}, &out, &errw); code != exitOK {
		t.Fatalf("store snapshot save: exit %d: %s%s", code, out.String(), errw.String())
	}
	restore := func(args ...string) int {
		out.Reset()
		errw.Reset()
		code := runStore(append([]string{"snapshot", "restore", "--config", c.cfgPath, "--node", "n1"}, args...), &out, &errw)
		t.Logf("restore %v: exit %d\n%s%s", args, code, out.String(), errw.String())
		return code
	}
	if code := restore(snap); code != exitUsage || !strings.Contains(errw.String(), "stop the agent on every node") {
		t.Fatalf("restore while the cluster runs: exit %d, want 2 and a message", code)
	}
	// The cluster goes on after the backup.
	setAlias("later")
	_, before := c.waitActive("n1", "n2", "n3")
	c.switchover()
	_, issued := c.waitActiveAbove(before, "n1", "n2", "n3")
	c.stopAll()
	for _, n := range c.cfg.Nodes {
		if err := os.RemoveAll(filepath.Join(c.cfg.DataDir, n.Name)); err != nil {
			t.Fatal(err)
		}
	}

	// A snapshot whose content does not match its hash fails etcd's
	// integrity check and leaves nothing behind.
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(c.dir, "damaged.db")
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := restore(damaged); code != exitUsage || !strings.Contains(errw.String(), "integrity") {
		t.Fatalf("restore of a damaged snapshot: exit %d, want 2 and a message", code)
	}
	if _, err := os.Stat(filepath.Join(c.cfg.DataDir, "n1", "etcd")); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left a data directory: %v", err)
	}
	floor := func() ha.Epoch {
		t.Helper()
		m := regexp.MustCompile(`every epoch from now on is above (\d+)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatal("restore does not say the epoch floor")
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return ha.Epoch(n)
	}
	if code := restore(snap); code != exitOK {
		t.Fatal("restore failed")
	}
	first := floor()
	if code := restore(snap); code != exitUsage || !strings.Contains(errw.String(), "--force") {
		t.Fatalf("restore over a data directory: exit %d, want 2 and a hint at --force", code)
	}
	// Again with --force, as after a first restore whose cluster served:
	// the data goes aside, and the same snapshot starts above it.
	if code := restore("--force", snap); code != exitOK {
		t.Fatal("restore --force failed")
	}
	if again := floor(); again <= first {
		t.Errorf("a second restore of the same snapshot starts at %d, not above the first one's %d", again, first)
	}
	if aside, _ := filepath.Glob(filepath.Join(c.cfg.DataDir, "n1", "etcd.before-restore-*")); len(aside) != 1 {
		t.Errorf("restore --force did not move the data directory aside: %v", aside)
	}

	c.start("n1")
	who, after := c.waitActiveAbove(issued, "n1")
	if who != "n1" || after <= restoreMargin {
		t.Fatalf("after the restore %s is active at epoch %d; want n1 above %d, the last epoch issued before, by the margin %d", who, after, issued, restoreMargin)
	}
	if !hasEvent(c.events(), "restore") {
		t.Error("no restore event in the history")
	}
	nc, _ := c.cfg.NodeByName("n1")
	st, err := fetchStatus(context.Background(), c.ops.api, []string{nc.API})
	if err != nil {
		t.Fatal(err)
	}
	alias := ""
	for _, n := range st.Nodes {
		if n.Name == "n2" {
			alias = n.Alias
		}
	}
	if alias != "saved" {
		t.Errorf("n2's alias after the restore = %q, want the snapshot's %q", alias, "saved")
	}
	// The runbook's last step: another node joins the restored cluster
	// empty. The store pauses from the add until n2 has joined (two
	// voters, one started), so n1's lease may lapse meanwhile and either
	// node win the next election: wait for n2 healthy as a standby or the
	// active, and an active at epoch after or later.
	out.Reset()
	errw.Reset()
	if code := runMembers([]string{"add", "--config", c.cfgPath, "n2"}, &out, &errw); code != exitOK {
		t.Fatalf("members add n2: exit %d: %s%s", code, out.String(), errw.String())
	}
	c.start("n2")
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, err := fetchStatus(context.Background(), c.ops.api, []string{nc.API})
		if err == nil && !st.Leader.None() && st.Leader.Epoch < after {
			t.Fatalf("after n2's join the active is %+v; want one at epoch %d or later", st.Leader, after)
		}
		joined := false
		for _, n := range st.Nodes {
			joined = joined || (err == nil && n.Name == "n2" && n.Healthy && (n.Role == ha.RoleStandby || n.Role == ha.RoleActive))
		}
		if joined && !st.Leader.None() {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("n2 did not join the restored cluster healthy, with an active: %+v %+v %v", st.Leader, st.Nodes, err)
		}
	}
	c.t.Logf("%v: n2 joined", time.Since(c.t0))
}
