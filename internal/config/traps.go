package config

import (
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Traps: settings that parse but break at run time. Each was hit by a new
// user running a real service (issue #18).

// Limits of exec checks. Starting a process costs a fork and an exec, a
// few milliseconds on an idle machine but hundreds under load (a busy Redis
// with redis-benchmark beside it, say); a check that times out then fails a
// healthy node over.
const (
	minExecTimeout  = time.Second
	minExecInterval = time.Second
)

// runtimeVars are defined at run time although no node's env defines
// them: the role variables, and what a process environment usually has.
var runtimeVars = []string{"HAVEN_ROLE", "HAVEN_EPOCH", "HOME", "PATH", "USER", "LOGNAME", "SHELL", "PWD", "HOSTNAME", "TMPDIR", "LANG", "TERM"}

var bracedVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// warn records a setting that works but is likely wrong.
func (b *builder) warn(line int, field, format string, args ...any) {
	b.c.Warnings = append(b.c.Warnings, problemf(line, field, format, args...))
}

// agentError records a setting that stops an agent but not `haven proxy`,
// which may read the same file with its own settings.
func (b *builder) agentError(line int, field, format string, args ...any) {
	b.c.AgentErrors = append(b.c.AgentErrors, problemf(line, field, format, args...))
}

// traps runs once the whole file is read.
func (b *builder) traps() {
	b.undefinedVars()
	b.sharedProxyListen()
	b.execCheckTimings()
	b.daemonisingCommand()
	b.lanFastTimings()
	for _, l := range [][]Problem{b.c.Warnings, b.c.AgentErrors} {
		sort.SliceStable(l, func(i, j int) bool { return l[i].Line < l[j].Line })
	}
}

// undefinedVars reports each ${NAME} that some node running the service
// does not define: haven would pass it on as written.
func (b *builder) undefinedVars() {
	c := b.c
	type use struct{ field, value string }
	var uses []use
	add := func(field string, vals ...string) {
		for _, v := range vals {
			uses = append(uses, use{field, v})
		}
	}
	add("service.command", c.Service.Command...)
	for _, k := range sortedKeys(c.Service.Env) {
		add("service.env."+k, c.Service.Env[k])
	}
	add("service.dir", c.Service.Dir)
	add("hooks.on_promote.command", c.Hooks.OnPromote.Command...)
	add("hooks.on_demote.command", c.Hooks.OnDemote.Command...)
	for i, ch := range c.Checks {
		path := indexField("checks", i)
		switch {
		case ch.HTTP != nil:
			add(path+".http.url", ch.HTTP.URL)
		case ch.TCP != nil:
			add(path+".tcp.address", ch.TCP.Address)
		case ch.Exec != nil:
			add(path+".exec.command", ch.Exec.Command...)
		case ch.Disk != nil:
			add(path+".disk.path", ch.Disk.Path)
		}
	}
	var proxyFields []string
	if c.Proxy.Listen != "" && !c.Proxy.Standalone {
		add("proxy.listen", c.Proxy.Listen)
		add("proxy.metrics_listen", c.Proxy.MetricsListen)
		proxyFields = []string{"proxy.listen", "proxy.metrics_listen"}
	}
	reported := map[string]bool{}
	for _, u := range uses {
		for _, m := range bracedVar.FindAllStringSubmatch(u.value, -1) {
			name := m[1]
			if reported[u.field+"\x00"+name] || slices.Contains(runtimeVars, name) {
				continue
			}
			var missing, have []string
			for _, n := range c.Nodes {
				if n.Witness {
					continue
				}
				if _, ok := c.Vars(n)[name]; ok {
					have = append(have, n.Name)
				} else {
					missing = append(missing, n.Name)
				}
			}
			if len(missing) == 0 {
				continue
			}
			reported[u.field+"\x00"+name] = true
			where := "any node"
			if len(have) > 0 {
				where = "node " + strings.Join(missing, ", ") + " (only " + strings.Join(have, ", ") + " has it)"
			}
			report := b.add
			if slices.Contains(proxyFields, u.field) {
				report = b.agentError // `haven proxy` does not expand it
			}
			report(b.lineFor(u.field), u.field, "${%s} is not defined for %s, so it would reach the program as the literal text ${%[1]s}; define it in every node's env (nodes[].env: {%[1]s: ...}), use one haven defines (HAVEN_NODE, HAVEN_CLUSTER, HAVEN_API), or write $%[1]s without braces if a shell should take it from the agent's environment", name, where)
		}
	}
}

// sharedProxyListen reports a proxy.listen that several nodes on one host
// would expand to the same address: every agent starts a proxy there, and
// all but the first exit with "address in use".
func (b *builder) sharedProxyListen() {
	c := b.c
	if c.Proxy.Listen == "" || c.Proxy.Standalone {
		return
	}
	owner := map[string]string{} // host + listen address -> first node
	for _, n := range c.Nodes {
		addr := Expand(c.Proxy.Listen, c.Vars(n))
		if n.Witness || strings.Contains(addr, "${") {
			continue // an undefined variable is reported on its own
		}
		key := hostOf(n) + " " + addr
		first, dup := owner[key]
		if !dup {
			owner[key] = n.Name
			continue
		}
		b.agentError(b.lineFor("proxy.listen"), "proxy.listen", "nodes %s and %s run on one host (%s) and would both start a proxy on %s: the second agent would exit with \"address in use\"; give each node its own address (listen: ${PROXY_LISTEN} with PROXY_LISTEN in each node's env), or set proxy.standalone: true and run one `haven proxy` for the cluster", first, n.Name, hostOf(n), addr)
		return
	}
}

// hostOf names the host a node runs on, from its API address: loopback
// addresses are all one host.
func hostOf(n Node) string {
	host, _, err := net.SplitHostPort(n.API)
	if err != nil {
		return n.API
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return "loopback"
	}
	return host
}

// execCheckTimings warns of exec checks whose timeout or interval leave no
// room for a process start under load.
func (b *builder) execCheckTimings() {
	for i, ch := range b.c.Checks {
		if ch.Exec == nil || len(ch.Exec.Command) == 0 {
			continue
		}
		path := indexField("checks", i)
		if ch.Timeout < minExecTimeout {
			b.warn(b.lineFor(path+".timeout"), path+".timeout", "%s is too short for an exec check: each run starts a process (%s), which takes a few ms on an idle machine but can take hundreds under load, and a run that times out fails a healthy node over; use a timeout of at least %s, or an http or tcp check", ch.Timeout, ch.Exec.Command[0], minExecTimeout)
		}
		if ch.Interval < minExecInterval {
			b.warn(b.lineFor(path+".interval"), path+".interval", "%s is short for an exec check: it starts %.0f processes a second on every node, which adds the load that makes it time out; use at least %s (a crash of the supervised service is seen at once without any check)", ch.Interval, float64(time.Second)/float64(ch.Interval), minExecInterval)
		}
	}
}

// daemonisingCommand warns of service commands known to put themselves in
// the background, which haven cannot supervise. (At run time, a command
// that exits 0 at once leaving processes behind is reported too.)
func (b *builder) daemonisingCommand() {
	argv := b.c.Service.Command
	if len(argv) == 0 {
		return
	}
	prog := filepath.Base(argv[0])
	args := strings.Join(argv[1:], " ")
	var msg string
	switch {
	case prog == "nginx" && !strings.Contains(args, "daemon off"):
		msg = "nginx puts itself in the background unless its configuration says `daemon off;`; add -g 'daemon off;' to the command, or make sure the file given with -c has it"
	case prog == "redis-server" && regexp.MustCompile(`--daemonize\s+yes`).MatchString(args):
		msg = "--daemonize yes puts redis-server in the background; use --daemonize no"
	case (prog == "pg_ctl" || prog == "pg_ctlcluster") && strings.Contains(args, "start"):
		msg = prog + " start puts PostgreSQL in the background; run the server itself: postgres -D DATADIR"
	case prog == "apachectl" || prog == "apache2ctl":
		msg = prog + " starts Apache in the background; run apache2 -DFOREGROUND (or httpd -DFOREGROUND)"
	default:
		return
	}
	b.warn(b.lineFor("service.command"), "service.command", "%s (haven supervises the service's main process: it must run in the foreground)", msg)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// lanFastTimings warns that the lan-fast preset trades tolerance of pauses
// for speed (#19): it is for a dedicated low-jitter LAN on hosts with CPU
// to spare, and an external store's revoke tick takes much of its gain.
func (b *builder) lanFastTimings() {
	t := b.c.Timing
	if !strings.HasPrefix(t.Preset, "lan-fast") {
		return
	}
	line := b.lineFor("timing")
	b.warn(line, "timing", "lan-fast is for a dedicated low-jitter LAN between hosts with CPU to spare: an active fences itself when no renewal is acknowledged within %s (lease_ttl − fence_margin) of the previous one's sending, and etcd elects a new leader after %s without heartbeats, so a stall of a few hundred milliseconds on any node (a loaded or shared host, a VM or GC pause, a slow disk) fails a healthy active over (never two actives); on this project's shared 2-core test machine, at load averages of 15 to 46, about one failover in three was followed by more (docs/benchmarks.md). Use lan (the default) unless node loss in about 1 s is worth that; health checks need room too (a timeout that load can reach fails a healthy node over)",
		t.FenceAfter(), t.EtcdElection)
	if b.c.Store.Backend == BackendEtcd {
		b.warn(line, "timing", "lan-fast with store.backend %s: an external etcd keeps a dead active's leader key up to %s past its lease (its lessor's tick; haven revokes at expiry only on the embedded etcd, whose lessor it can read: the API tells no expiry finer than a second), half of lan-fast's 1 s lease; node loss takes up to %s here",
			b.c.Store.Backend, RevokeDelay(b.c.Store.Backend), t.WorstCaseOn(nil, b.c.Store.Backend).AgentLoss)
	}
}
