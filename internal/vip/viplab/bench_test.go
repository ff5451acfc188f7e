package viplab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/harness"
)

// BenchmarkVIP runs haven (lan preset) and Debian's keepalived (VRRPv3,
// advert_int from KEEPALIVED_ADVERT, default 0.1 s) in the same topology,
// one after the other, and measures what the client namespace sees: the
// RTO after a node loss (both its links cut) and after a service loss
// (SIGKILL), and on a partition (the holder's cluster link cut for 8 s)
// how long two nodes held the VIP at once; VIP_RUNS faults of each kind
// (default 5). Before each haven node loss it waits until etcd leadership
// has left the holder (leaderAway), and says how often it had not. For
// haven it also splits the node-loss RTO: from the fault
// until another node answers /lb-check 200 (the lease's part), and from
// then until the client is answered through the VIP (the address's move).
// bench/vip.sh runs it:
//
//	VIP_RUNS=5 go test ./internal/vip/viplab/ -run '^$' -bench BenchmarkVIP -benchtime 1x
//
// -bench BenchmarkVIP/keepalived (or /haven-lan, /haven-lan-fast) runs one.
func BenchmarkVIP(b *testing.B) {
	advert := os.Getenv("KEEPALIVED_ADVERT")
	if advert == "" {
		advert = "0.1"
	}
	b.Run("haven-lan", func(b *testing.B) { runScenarios(b, newHavenSystem(b, "timing: lan")) })
	b.Run("haven-lan-fast", func(b *testing.B) { runScenarios(b, newHavenSystem(b, "timing: lan-fast")) })
	b.Run("keepalived", func(b *testing.B) { runScenarios(b, newKeepalivedSystem(b, advert)) })
}

// firstServing polls the nodes other than old every 10 ms until one
// answers /lb-check 200, and sends when (the zero time if stop comes
// first: keepalived's nodes have no /lb-check).
func (c *cluster) firstServing(old *node, stop chan struct{}) <-chan time.Time {
	out := make(chan time.Time, 1)
	go func() {
		for {
			for _, n := range c.nodes {
				if n != old && !n.witness && c.lbCheck(n) == 200 {
					out <- time.Now()
					return
				}
			}
			select {
			case <-stop:
				out <- time.Time{}
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return out
}

// system is what the scenarios need from haven or keepalived.
type system struct {
	c      *cluster
	steady func() *node // one holder the client reaches; everything ready for the next fault
	// settle, if set, waits before a node loss until etcd leadership has
	// left n (haven: see leaderAway); it reports whether n still led etcd.
	settle         func(n *node) bool
	killService    func(n *node)
	restoreService func(n *node)
}

func runScenarios(b *testing.B, s system) {
	c := s.c
	cl := c.startClient()
	var nodeLoss, svcLoss, toPromote, toClient []time.Duration
	var gets []int
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("VIP_RUNS")); err == nil && n > 0 {
		runs = n
	}
	ledEtcd := 0
	for range runs {
		old := s.steady()
		if s.settle != nil && s.settle(old) {
			ledEtcd++
		}
		fault := time.Now()
		for _, end := range []string{old.clusterEnd, old.clientEnd} {
			if err := c.lab.SetLink(end, false); err != nil {
				b.Fatal(err)
			}
		}
		stop := make(chan struct{})
		served := c.firstServing(old, stop)
		o := waitOther(b, cl, fault, old)
		close(stop)
		nodeLoss = append(nodeLoss, o.rto)
		gets = append(gets, o.failedGets)
		if at := <-served; !at.IsZero() {
			toPromote = append(toPromote, at.Sub(fault))
			toClient = append(toClient, max(0, o.rto-at.Sub(fault)))
		}
		for _, end := range []string{old.clusterEnd, old.clientEnd} {
			if err := c.lab.SetLink(end, true); err != nil {
				b.Fatal(err)
			}
		}
	}
	for range runs {
		old := s.steady()
		fault := time.Now()
		s.killService(old)
		o := waitOther(b, cl, fault, old)
		svcLoss = append(svcLoss, o.rto)
		s.restoreService(old)
	}
	// Partition: the holder loses the cluster network; clients still
	// reach every node.
	old := s.steady()
	if err := c.lab.Partition(old.clusterEnd, true); err != nil {
		b.Fatal(err)
	}
	cut := time.Now()
	var dual time.Duration
	most := 0
	last := cut
	for time.Since(cut) < 8*time.Second {
		holders := 0
		for _, n := range c.nodes {
			if c.holds(n) {
				holders++
			}
		}
		now := time.Now()
		if holders >= 2 {
			dual += now.Sub(last)
		}
		if holders != most && holders > most {
			b.Logf("partition of %s: %d holders after %s", old.name, holders, time.Since(cut).Round(time.Millisecond))
		}
		most = max(most, holders)
		last = now
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.lab.Partition(old.clusterEnd, false); err != nil {
		b.Fatal(err)
	}
	s.steady()

	p50 := func(ds []time.Duration) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[len(s)/2].Milliseconds())
	}
	b.ReportMetric(p50(nodeLoss), "node-loss-p50-ms")
	b.ReportMetric(float64(slices.Max(nodeLoss).Milliseconds()), "node-loss-max-ms")
	b.ReportMetric(p50(svcLoss), "service-loss-p50-ms")
	b.ReportMetric(float64(slices.Max(svcLoss).Milliseconds()), "service-loss-max-ms")
	if len(toPromote) > 0 {
		b.ReportMetric(p50(toPromote), "node-loss-to-lb-check-p50-ms")
		b.ReportMetric(p50(toClient), "node-loss-lb-check-to-client-p50-ms")
		b.Logf("node loss: another node answered /lb-check 200 after %v; the client reached it through the VIP %v later", round(toPromote), round(toClient))
	}
	if s.settle != nil {
		b.Logf("node loss: the cut holder led etcd in %d of %d runs", ledEtcd, runs)
	}
	b.ReportMetric(float64(most), "partition-max-holders")
	b.ReportMetric(dual.Seconds(), "partition-two-holders-s")
	b.Logf("node loss RTO %v (failed GETs %v); service loss RTO %v; partition: at most %d holders, two or more for %s of 8s",
		round(nodeLoss), gets, round(svcLoss), most, dual.Round(time.Millisecond))
}

func round(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// waitOther waits until the client reaches a node other than old through
// the VIP (ping and GET) and returns what it saw.
func waitOther(b testing.TB, cl *client, fault time.Time, old *node) outage {
	var o outage
	waitFor(b, 30*time.Second, "the client to reach another node than "+old.name, func() bool {
		var ok bool
		o, ok = cl.outage(fault, func(n string) bool { return n != "" && n != old.name })
		return ok
	})
	return o
}

func newHavenSystem(b *testing.B, timing string) system {
	c := newCluster(b, timing, "")
	return system{
		c: c,
		steady: func() *node {
			a := c.waitActive(60 * time.Second)
			for _, n := range c.nodes {
				if n != a {
					c.standbyAgain(n, 60*time.Second)
				}
			}
			return a
		},
		killService: func(n *node) {
			st, err := c.status(n)
			if err != nil {
				b.Fatal(err)
			}
			for _, v := range st.Nodes {
				if v.Name == n.name && v.ServicePID != 0 {
					_ = syscall.Kill(v.ServicePID, syscall.SIGKILL)
					return
				}
			}
			b.Fatalf("no service pid for %s", n.name)
		},
		restoreService: func(*node) {}, // the agent restarts it
		settle: func(n *node) bool {
			return leaderAway(c, n)
		},
	}
}

// leaderAway waits, before a node loss, up to 15 s until etcd leadership
// has left n (the active moves it off its member a lease after its
// promotion), then one second more, for the renewals to undo the lease
// extension the new etcd leader grants every lease: as bench/failover.sh
// and haven drill do, so that the RTO is a node loss's, not a node loss's
// plus an etcd election's. It reports whether n still led etcd.
func leaderAway(c *cluster, n *node) bool {
	leader := func() string { return harness.EtcdLeader(context.Background(), hc, n.api) }
	moved := false
	for deadline := time.Now().Add(15 * time.Second); leader() == n.name && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		moved = true
	}
	if moved {
		time.Sleep(time.Second)
	}
	return leader() == n.name
}

// newKeepalivedSystem runs keepalived in every node namespace: VRRP over
// the cluster network (eth0), the VIP on eth1, busybox httpd as the
// service, checked by a vrrp_script every second (the least keepalived
// 2.2 accepts; track_process needs the process connector, which only the
// initial network namespace has).
func newKeepalivedSystem(b *testing.B, advert string) system {
	if _, err := exec.LookPath("keepalived"); err != nil {
		b.Fatal("keepalived is not installed: apt-get install keepalived")
	}
	c := newLab(b)
	httpd := map[*node]*exec.Cmd{}
	startHTTPD := func(n *node) {
		dir := filepath.Join(c.dir, n.name)
		cmd := exec.Command("ip", "netns", "exec", n.ns, "busybox", "httpd", "-f", "-p", "0.0.0.0:8080", "-h", dir)
		cmd.Stdout, cmd.Stderr = n.log, n.log // killed by the cleanup
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		go func() { _ = cmd.Wait() }()
		httpd[n] = cmd
	}
	var kas []*exec.Cmd
	for i, n := range c.nodes {
		dir := filepath.Join(c.dir, n.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		files := map[string]string{
			"index.html": fmt.Sprintf(`{"node":%q}`, n.name),
			"check.sh":   "#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/8080\n",
			"notify.sh":  "#!/bin/bash\necho \"$3\" > " + filepath.Join(dir, "state") + "\n",
			"keepalived.conf": fmt.Sprintf(`global_defs {
  router_id %s
  vrrp_version 3
  enable_script_security
  script_user root
}
vrrp_script svc {
  script "%s/check.sh"
  interval 1
  timeout 1
  fall 1
  rise 1
}
vrrp_instance VI {
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id 51
  priority %d
  advert_int %s
  virtual_ipaddress {
    %s dev eth1
  }
  track_script {
    svc
  }
  notify "%s/notify.sh"
}
`, n.name, dir, 150-40*i, advert, c.vip, dir),
		}
		for name, text := range files {
			mode := os.FileMode(0o644) // keepalived refuses an executable config
			if filepath.Ext(name) == ".sh" {
				mode = 0o755
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), mode); err != nil {
				b.Fatal(err)
			}
		}
		startHTTPD(n)
		ka := exec.Command("ip", "netns", "exec", n.ns, "keepalived", "-n", "-l", "-D", "-P",
			"-f", filepath.Join(dir, "keepalived.conf"), "-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "v.pid"))
		ka.Stdout, ka.Stderr = n.log, n.log
		if err := ka.Start(); err != nil {
			b.Fatal(err)
		}
		kas = append(kas, ka)
	}
	b.Cleanup(func() {
		for _, ka := range kas {
			_ = ka.Process.Signal(syscall.SIGTERM)
			_ = ka.Wait()
		}
		for _, h := range httpd {
			_ = h.Process.Kill()
		}
		if b.Failed() || os.Getenv("VIP_LOGS") != "" {
			for _, n := range c.nodes {
				b.Logf("---- keepalived on %s ----\n%s", n.name, n.log.String())
			}
		}
	})
	return system{
		c: c,
		steady: func() *node {
			var holder *node
			waitFor(b, 60*time.Second, "one keepalived MASTER holding the VIP, the others BACKUP", func() bool {
				holder = nil
				for _, n := range c.nodes {
					state, _ := os.ReadFile(filepath.Join(c.dir, n.name, "state"))
					switch strings.TrimSpace(string(state)) {
					case "MASTER":
						if holder != nil || !c.holds(n) {
							return false
						}
						holder = n
					case "BACKUP":
						if c.holds(n) {
							return false
						}
					default:
						return false
					}
				}
				if holder == nil {
					return false
				}
				_, _, ok := getFrom(c.client, c.vip.Addr().String()+":8080")
				return ok
			})
			return holder
		},
		killService: func(n *node) { _ = httpd[n].Process.Kill() },
		restoreService: func(n *node) {
			startHTTPD(n)
		},
	}
}
