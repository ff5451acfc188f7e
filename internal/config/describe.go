package config

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/vip"
)

// Describe renders the effective configuration for `haven config check`:
// every default filled in, the fence deadline, and the worst-case failover
// times the timings imply.
func (c *Config) Describe() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	line := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }

	line("cluster %s (%s), read from %s", c.Cluster, c.Mode, c.Path)
	line("data_dir %s (each node keeps its data in data_dir/<node>)", c.DataDir)
	line("")

	line("store: %s", c.Store.Describe())
	if c.Store.External() {
		line("nodes: %d, none votes: the store decides who is active, so any of them may fail", len(c.Nodes))
	} else {
		voters := len(c.Voters())
		majority := voters/2 + 1
		line("nodes: %d etcd %s, a majority is %d, so %d may fail", voters, plural(voters, "voter", "voters"), majority, voters-majority)
	}
	line("  NAME\tSITE\tROLE\tAPI\tPEER\tCLIENT\tENV")
	for _, n := range c.Nodes {
		role := "service"
		if n.Witness {
			role = "witness"
		}
		line("  %s\t%s\t%s\t%s\t%s\t%s\t%s", n.Name, orDash(n.Site), role, orDash(n.API), orDash(n.Peer), orDash(n.Client), orDash(strings.Join(Environ(n.Env), " ")))
	}
	line("")

	s := c.Service
	if len(s.Command) == 0 {
		line("service: none; it is managed outside haven, through the hooks")
	} else {
		line("service:")
		line("  command\t%s", quoteArgs(s.Command))
		if s.Dir != "" {
			line("  dir\t%s", s.Dir)
		}
		if len(s.Env) > 0 {
			line("  env\t%s", strings.Join(Environ(s.Env), " "))
		}
		standby := "hot (runs on standbys too)"
		if s.Standby == StandbyCold {
			standby = "cold (started on promotion, stopped on demotion)"
		}
		line("  standby\t%s", standby)
		line("  stop\t%s, then SIGKILL after %s", s.StopSignal, s.StopGrace)
		line("  restart\t%s, first delay %s (doubling up to 10s)", s.Restart, s.RestartDelay)
	}
	line("")

	line("hooks:")
	line("  on_promote\t%s (timeout %s)", orNone(quoteArgs(c.Hooks.OnPromote.Command)), c.Hooks.OnPromote.Timeout)
	line("  on_demote\t%s (timeout %s)", orNone(quoteArgs(c.Hooks.OnDemote.Command)), c.Hooks.OnDemote.Timeout)
	line("  promote_backoff\t%s (a node is not eligible this long after a failed on_promote)", c.Hooks.PromoteBackoff)
	line("")

	if len(c.Checks) == 0 {
		line("checks: none")
	} else {
		line("checks (all must pass):")
		for _, ch := range c.Checks {
			line("  %s\t%s\tevery %s, timeout %s, healthy after %d, unhealthy after %d", ch.Name, describeCheck(ch), ch.Interval, ch.Timeout, ch.Rise, ch.Fall)
		}
	}
	line("")
	line("log: level %s, format %s", c.Log.Level, c.Log.Format)
	line("")
	if c.VIP.Enabled() {
		if c.VIP.FollowsProxy() {
			line("vip: %s follows a node whose proxy is healthy (its own election in the store as %q, with its own lease and epoch; added after a node wins, removed first when it loses)", c.VIP.Address, c.VIPElection())
			for _, n := range c.Nodes {
				if !n.Witness {
					line("  %s\ton %s; checks its proxy at %s (tcp, every %s, unhealthy after %d failures) and that %s has a carrier", n.Name, c.VIPInterface(n), c.VIPProxyCheck(n), VIPProxyCheckInterval, VIPProxyCheckFall, c.VIPInterface(n))
				}
			}
		} else {
			line("vip: %s follows the active node (added after it serves, removed first when it demotes; a node whose interface has no carrier is unhealthy)", c.VIP.Address)
			for _, n := range c.Nodes {
				if !n.Witness {
					line("  %s\ton %s", n.Name, c.VIPInterface(n))
				}
			}
		}
		line("  announce\t%d gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6), %s apart", c.VIP.GARPCount, c.VIP.GARPInterval)
		if life := vip.Lifetime(c.Timing.LeaseTTL-c.Timing.FenceMargin, c.VIP.Address.Addr().Is6()); life > 0 {
			line("  kernel expiry\tthe address has a lifetime of %s in the kernel, renewed while the node serves: a frozen or killed agent's copy is gone by its fence deadline", life)
		} else {
			line("  kernel expiry\toff: lease_ttl − fence_margin = %s leaves no whole second for a lifetime; a frozen or killed agent's copy stays until that agent runs again (raise lease_ttl to turn it on)", c.Timing.FenceAfter())
		}
		line("  needs\tCAP_NET_ADMIN and CAP_NET_RAW (root, or AmbientCapabilities in the systemd unit), and a LAN that accepts gratuitous ARP")
		line("")
	}

	t := c.Timing
	line("timing: %s", t.Preset)
	line("  lease_ttl\t%s", t.LeaseTTL)
	line("  renew_interval\t%s", t.RenewInterval)
	line("  renew_timeout\t%s", t.RenewTimeout)
	line("  fence_margin\t%s", t.FenceMargin)
	line("  etcd_heartbeat\t%s", t.EtcdHeartbeat)
	line("  etcd_election\t%s", t.EtcdElection)
	line("")

	var demote time.Duration
	if len(c.Hooks.OnDemote.Command) > 0 {
		demote = c.Hooks.OnDemote.Timeout
	}
	line("fencing:")
	line("  the active stops serving at last-renewal-sent + lease_ttl − fence_margin = last-renewal-sent + %s", t.FenceAfter())
	line("  renewals: 2 × renew_interval + renew_timeout = %s fits in lease_ttl − fence_margin = %s, so one lost renewal does not fence the active",
		2*t.RenewInterval+t.RenewTimeout, t.FenceAfter())
	if demote > 0 {
		line("  demotion: on_demote timeout %s + clock drift allowance %s (lease_ttl/100 + 10ms) = %s fits in fence_margin %s, so the active has demoted before its lease can expire in the store",
			demote, t.DriftAllowance(), demote+t.DriftAllowance(), t.FenceMargin)
	} else {
		line("  demotion: no on_demote hook; the clock drift allowance %s (lease_ttl/100 + 10ms) fits in fence_margin %s, so the active has stopped before its lease can expire in the store",
			t.DriftAllowance(), t.FenceMargin)
	}
	if c.VIP.Enabled() {
		line("  vip: removing %s is the first step of a demotion; fencing sets aside %s of fence_margin for it (counted with on_demote above in the demote rule)", c.VIP.Address, VIPRemoveBudget)
	}
	if s.Standby == StandbyCold && len(s.Command) > 0 {
		line("  cold standby: the agent SIGKILLs the service at the fence deadline if it is still stopping, so stop_grace needs no room in fence_margin")
	}
	line("")

	if ss := c.Sessions; ss.Listen != "" {
		keys, auth := "no limit", "none (loopback only)"
		if ss.MaxKeys > 0 {
			keys = strconv.Itoa(ss.MaxKeys)
		}
		if ss.Password != "" {
			auth = "required"
		}
		writers := "writes on the active only, fenced by its epoch"
		if c.Mode == ha.ModeActiveActive {
			writers = "writes on every serving node, each a compare-and-swap"
		}
		held := "etcd"
		if c.Store.Backend == BackendPostgres || c.Store.Backend == BackendMySQL {
			held = "the database"
		}
		line("sessions: Redis protocol on %s on each node; %s, acknowledged once %s committed them (RPO 0)", ss.Listen, writers, held)
		line("  max_value_bytes %d, max_keys %s, password %s", ss.MaxValueBytes, keys, auth)
		if held == "etcd" && c.Mode != ha.ModeActiveActive {
			line("  layout in etcd: one key per session until every node runs a version that reads the packed layout, then packed (a log and snapshots; one-way: docs/sessions.md)")
		}
		line("")
	}

	if sy := c.Sync; sy.Enabled() {
		bw := "no bandwidth bound"
		if sy.Bandwidth > 0 {
			bw = fmt.Sprintf("at most %d bytes/s", sy.Bandwidth)
		}
		line("sync: the active ships %d %s to every standby; a standby lacking a file older than max_lag %s is behind; %s", len(sy.Folders), plural(len(sy.Folders), "folder", "folders"), sy.MaxLag, bw)
		for _, f := range sy.Folders {
			line("  %s	%s	delete: %s, shipped after %s quiet, include %s, exclude %s", f.Name, f.Path, f.Delete, f.Quiet, orDash(strings.Join(f.Include, " ")), orDash(strings.Join(f.Exclude, " ")))
		}
		line("")
	}

	wc := t.WorstCaseOn(c.Checks, c.Store.Backend)
	line("worst-case failover (from the failure until another node is active):")
	if services := len(c.Nodes) - witnesses(c.Nodes); services < 2 {
		line("  (with %d service %s there is nothing to fail over to; these are the times once there is)", services, plural(services, "node", "nodes"))
	}
	line("  service exits\t≈ store round trips (tens of ms), taken as 4 × etcd_heartbeat\t%s", wc.ServiceCrash)
	if len(c.Checks) == 0 {
		line("  checks fail, service runs\tno checks configured\t-")
	} else {
		line("  checks fail, service runs\tmax(fall × interval + timeout) + 4 × etcd_heartbeat\t%s", wc.Unhealthy)
	}
	if RevokeDelay(c.Store.Backend) == 0 {
		line("  agent or node lost\tlease_ttl (revoked at expiry) + 4 × etcd_heartbeat\t%s", wc.AgentLoss)
		line("  ... and it led etcd\t3 × etcd_election + lease_ttl + 4 × etcd_heartbeat\t%s", wc.AgentLossLeader)
	} else {
		line("  agent or node lost\tlease_ttl + 500ms lease revoke tick + 4 × etcd_heartbeat\t%s", wc.AgentLoss)
		line("  ... and it led etcd\t3 × etcd_election + lease_ttl + 500ms + 4 × etcd_heartbeat\t%s", wc.AgentLossLeader)
	}
	switch {
	case c.Store.Backend == BackendEtcd && c.LockDelay != LockDelayOff:
		// etcd's tick leaves no record of the expiry: the winner waits out
		// the lock-delay (docs/stores.md).
		line("  agent or node lost, lock_delay: auto\tlease_ttl + 500ms + lease_ttl (lock-delay) + 4 × etcd_heartbeat\t%s", wc.AgentLoss+t.LeaseTTL)
	case c.Store.Backend == BackendEtcd:
		line("  (lock_delay: off — unsafe if an etcd raft leader freezes and wakes: it can revoke the live active's lease, docs/stores.md)")
	}
	line("  isolated active stops\tlease_ttl − fence_margin after its last renewal was sent\t%s", wc.FenceAfter)
	if !c.Store.External() {
		line("  (the etcd leader revokes a dead active's lease at its expiry; a standby leading etcd lets another standby win the campaign, and the active moves etcd leadership to another member, except within lease_ttl of a failover or an etcd election, or while its renewals are late)")
	}
	if c.Store.Backend == BackendEtcd {
		line("  (an external etcd revokes a dead active's lease on its lessor's own 500ms tick: haven cannot revoke at expiry there, as no etcd API tells a lease's expiry finer than a second)")
	}

	w.Flush()
	return b.String()
}

func witnesses(nodes []Node) int {
	n := 0
	for _, node := range nodes {
		if node.Witness {
			n++
		}
	}
	return n
}

func describeCheck(c Check) string {
	switch {
	case c.HTTP != nil:
		return fmt.Sprintf("http GET %s expects %d", c.HTTP.URL, c.HTTP.ExpectStatus)
	case c.TCP != nil:
		return "tcp connect " + c.TCP.Address
	case c.Exec != nil:
		return "exec " + quoteArgs(c.Exec.Command)
	case c.Disk != nil:
		return fmt.Sprintf("disk %s: at least %d bytes and %g%% free", c.Disk.Path, c.Disk.MinFreeBytes, c.Disk.MinFreePercent)
	}
	return "?"
}

// quoteArgs shows an argv the way a shell user would type it.
func quoteArgs(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
