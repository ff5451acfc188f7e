package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/service"
	"github.com/haven-ha/haven/internal/service/contain"
	"go.yaml.in/yaml/v3"
)

// Defaults for fields the file may leave out. The timing defaults are the
// presets; the on_demote timeout defaults to half the fence margin.
const (
	defaultMode           = ha.ModeActivePassive
	defaultPreset         = "lan"
	defaultStopGrace      = 5 * time.Second
	defaultRestartDelay   = 200 * time.Millisecond
	defaultPromoteTimeout = 5 * time.Second
	defaultPromoteBackoff = 10 * time.Second
	defaultCheckInterval  = 500 * time.Millisecond
	maxCheckTimeout       = 1 * time.Second // default timeout is min(interval, this)
	defaultRise           = 2
	defaultFall           = 2
	defaultExpectStatus   = 200
	maxVoters             = 7
	defaultPriority       = 100
)

// The keys each mapping accepts, in the order they are listed to the user.
var (
	topKeys     = []string{"cluster", "mode", "data_dir", "timing", "timings", "store", "nodes", "service", "hooks", "checks", "proxy", "preempt", "api", "outage_policy", "redirect", "dashboard", "drill", "log", "vip", "sessions", "tls", "insecure", "sync", "lock_delay"}
	timingKeys  = []string{"lease_ttl", "renew_interval", "renew_timeout", "fence_margin", "etcd_heartbeat", "etcd_election"}
	nodeKeys    = []string{"name", "site", "api", "peer", "client", "backend", "witness", "backup", "priority", "env", "vip_interface"}
	serviceKeys = []string{"command", "env", "dir", "standby", "stop_signal", "stop_grace", "restart", "restart_delay", "containment"}
	hooksKeys   = []string{"on_promote", "on_demote", "promote_backoff"}
	hookKeys    = []string{"command", "timeout"}
	checkKeys   = []string{"name", "http", "tcp", "exec", "interval", "timeout", "rise", "fall", "disk"}
	httpKeys    = []string{"url", "expect_status", "ca_file", "server_name"}
	tcpKeys     = []string{"address"}
	execKeys    = []string{"command"}
	logKeys     = []string{"level", "format"}

	stopSignals = []string{"SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL"}

	clusterName = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)
	nodeName    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)
	checkName   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
)

// Load reads and validates the configuration file at path. Relative paths
// in it are resolved against the file's directory, made absolute.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return parse(path, base, data)
}

// Parse validates data as the configuration file at path, without reading
// the file system; path is used for messages and to resolve relative paths.
// A returned error is an *Error listing every problem found.
func Parse(path string, data []byte) (*Config, error) {
	return parse(path, filepath.Dir(path), data)
}

func parse(path, baseDir string, data []byte) (*Config, error) {
	d := newDecoder()
	root := d.document(data)
	if root == nil {
		return nil, d.err(path)
	}
	top := d.mapping(root, "", topKeys)
	c := &Config{Path: path}
	b := builder{decoder: d, c: c, baseDir: baseDir}
	b.top(top)
	if err := d.err(path); err != nil {
		return nil, err
	}
	return c, nil
}

// builder fills a Config from the top-level fields.
type builder struct {
	*decoder
	c       *Config
	baseDir string

	timingBad  bool // a timing input did not parse, so the timing rules would mislead
	demoteSet  bool // hooks.on_demote.timeout was given
	nodesLine  int
	addrOwners map[string]string // normalised host:port -> field that has it
}

// required returns f[key] or reports that it is missing.
func (b *builder) required(f fields, path, key, hint string) *yaml.Node {
	if n, ok := f[key]; ok {
		return n
	}
	if f == nil {
		return nil // not a mapping at all, already reported
	}
	field := joinField(path, key)
	b.add(b.lineFor(field), field, "missing; %s", hint)
	return nil
}

func (b *builder) top(f fields) {
	c := b.c
	if n := b.required(f, "", "cluster", "name the cluster, e.g. cluster: demo"); n != nil {
		if s, ok := b.str(n, "cluster"); ok {
			if clusterName.MatchString(s) {
				c.Cluster = s
			} else {
				b.add(n.Line, "cluster", "invalid name %q; use 1 to 40 lowercase letters, digits or '-'", s)
			}
		}
	}

	c.Mode = defaultMode
	if n, ok := f["mode"]; ok {
		if s, ok := b.oneOf(n, "mode", string(ha.ModeActivePassive), string(ha.ModeActiveActive), string(ha.ModePassiveBackup)); ok {
			c.Mode = ha.Mode(s)
		}
	}

	if n := b.required(f, "", "data_dir", "say where nodes keep their data, e.g. data_dir: /var/lib/haven"); n != nil {
		if s, ok := b.str(n, "data_dir"); ok {
			if strings.TrimSpace(s) == "" {
				b.add(n.Line, "data_dir", "is empty; give a directory, e.g. /var/lib/haven")
			} else {
				c.DataDir = b.resolve(s)
			}
		}
	}

	b.timing(f)
	b.store(f)
	b.nodes(f)
	b.service(f)
	b.hooks(f)
	b.checks(f)
	b.proxy(f)
	b.ops(f)
	b.dashboard(f) // after ops: it needs api.token
	b.drill(f)
	b.log(f)
	b.traps()
	b.vip(f)      // after nodes: it checks their addresses and interfaces
	b.sessions(f) // after store and mode
	b.clusterTLS(f)
	b.sync(f) // after nodes, ops, mode and tls

	// The on_demote default depends on the fence margin, so it is set only
	// now that the timings are known.
	if !b.demoteSet {
		c.Hooks.OnDemote.Timeout = c.Timing.FenceMargin / 2
	}
	if !b.timingBad {
		var demote time.Duration
		if len(c.Hooks.OnDemote.Command) > 0 {
			demote = c.Hooks.OnDemote.Timeout
		}
		if c.VIP.Enabled() {
			demote += VIPRemoveBudget // removed first, then on_demote runs
		}
		for _, p := range checkTiming(c.Timing, demote, c.Checks, c.Store.Backend == BackendEmbedded || c.Store.Backend == BackendEtcd) {
			field := p.Field
			if _, ok := b.lines[field]; !ok {
				for _, r := range p.Related {
					if _, ok := b.lines[r]; ok {
						field = r
						break
					}
				}
			}
			b.add(b.lineFor(field), field, "%s", p.Msg)
		}
	}
}

// resolve makes a relative path relative to the config file's directory.
func (b *builder) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(b.baseDir, p)
}

func (b *builder) timing(f fields) {
	name := defaultPreset
	if n, ok := f["timing"]; ok {
		if s, ok := b.oneOf(n, "timing", presetNames...); ok {
			name = s
		} else {
			b.timingBad = true
		}
	}
	t, _ := Preset(name)
	custom, setRenew := false, false
	if n, ok := f["timings"]; ok {
		tf := b.mapping(n, "timings", timingKeys)
		if tf == nil {
			b.timingBad = true
		}
		for _, key := range timingKeys {
			n, ok := tf[key]
			if !ok {
				continue
			}
			v, ok := b.duration(n, "timings."+key)
			if !ok {
				b.timingBad = true
				continue
			}
			custom = true
			setRenew = setRenew || key == "renew_interval"
			switch key {
			case "lease_ttl":
				t.LeaseTTL = v
			case "renew_interval":
				t.RenewInterval = v
			case "renew_timeout":
				t.RenewTimeout = v
			case "fence_margin":
				t.FenceMargin = v
			case "etcd_heartbeat":
				t.EtcdHeartbeat = v
			case "etcd_election":
				t.EtcdElection = v
			}
		}
	}
	if custom {
		t.Preset = name + " (custom)"
		if !setRenew && name == "lan" {
			t.RenewInterval = fitRenew(t, lanRenewFloor)
		}
	}
	b.c.Timing = t
}

func (b *builder) nodes(f fields) {
	n := b.required(f, "", "nodes", "list the cluster's nodes, each with name, api, peer and client")
	if n == nil {
		return
	}
	b.nodesLine = b.lineFor("nodes")
	items, ok := b.sequence(n, "nodes", "nodes")
	if !ok {
		return
	}
	if len(items) == 0 {
		b.add(n.Line, "nodes", "is empty; list at least one node")
		return
	}
	b.addrOwners = map[string]string{}
	names := map[string]string{} // name -> field of the node that has it
	for i, it := range items {
		path := indexField("nodes", i)
		nf := b.mapping(it, path, nodeKeys)
		if nf == nil {
			continue
		}
		node := Node{Line: it.Line}
		if v := b.required(nf, path, "name", "give the node a name, e.g. name: n1"); v != nil {
			if s, ok := b.str(v, path+".name"); ok {
				switch other, dup := names[s]; {
				case !nodeName.MatchString(s):
					b.add(v.Line, path+".name", "invalid name %q; use up to 31 lowercase letters, digits or '-', starting with a letter or digit", s)
				case dup:
					b.add(v.Line, path+".name", "duplicate node name %q (also %s on line %d); give every node its own name", s, other, b.lines[other])
				default:
					names[s] = path
				}
				node.Name = s
			}
		}
		if v, ok := nf["site"]; ok {
			node.Site = b.site(v, path+".site")
		}
		if v, ok := nf["witness"]; ok {
			node.Witness, _ = b.boolean(v, path+".witness")
		}
		if v, ok := nf["backup"]; ok {
			node.Backup, _ = b.boolean(v, path+".backup")
		}
		node.Priority = defaultPriority
		if v, ok := nf["priority"]; ok {
			node.Priority, _ = b.integer(v, path+".priority", 0, 1000)
		}
		if v, ok := nf["api"]; ok {
			node.API = b.address(v, path+".api")
		} else if !node.Witness {
			b.add(b.lineFor(path+".api"), path+".api", "missing; a node that runs the service needs api: host:port for its agent API (or set witness: true)")
		}
		// With an external store, agents run no etcd member: peer and client are optional.
		if _, ok := nf["peer"]; ok || !b.c.Store.External() {
			if v := b.required(nf, path, "peer", "give the etcd peer address, e.g. peer: 10.0.0.1:7201"); v != nil {
				node.Peer = b.address(v, path+".peer")
			}
		}
		if _, ok := nf["client"]; ok || !b.c.Store.External() {
			if v := b.required(nf, path, "client", "give the etcd client address, e.g. client: 10.0.0.1:7301"); v != nil {
				node.Client = b.address(v, path+".client")
			}
		}
		if v, ok := nf["backend"]; ok {
			node.Backend = b.address(v, path+".backend")
		}
		if v, ok := nf["env"]; ok {
			node.Env, _ = b.env(v, path+".env")
		}
		if v, ok := nf["vip_interface"]; ok {
			node.VIPInterface = b.ifname(v, path+".vip_interface")
		}
		b.c.Nodes = append(b.c.Nodes, node)
	}
	b.voters(len(items))
}

// maxSite bounds a node's site: a short label such as dc1 or "Paris 2".
const maxSite = 32

// site returns a node's site: up to maxSite printable characters, with no
// space at either end. It is shown in status and on the dashboard, so
// control characters and long text are refused rather than cut.
func (b *builder) site(n *yaml.Node, field string) string {
	s, ok := b.str(n, field)
	if !ok {
		return ""
	}
	switch {
	case s == "":
		b.add(n.Line, field, "is empty; name the node's site, e.g. site: dc1, or leave the line out")
	case utf8.RuneCountInString(s) > maxSite:
		b.add(n.Line, field, "%q is %d characters; use a short label of up to %d, e.g. site: dc1", s, utf8.RuneCountInString(s), maxSite)
	case strings.TrimSpace(s) != s:
		b.add(n.Line, field, "%q starts or ends with a space; remove it", s)
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		b.add(n.Line, field, "%q holds a control or invisible character; use letters, digits, spaces and punctuation, e.g. site: dc1", s)
	default:
		return s
	}
	return ""
}

// voters applies the quorum rules. All nodes, witnesses included, are etcd
// voters.
func (b *builder) voters(count int) {
	if st := b.c.Store; st.External() {
		// The agents are not voters: the external store (a database, or an
		// etcd cluster with its own members) decides, so the quorum and
		// witness rules do not apply, and two nodes are fine.
		if w := witnesses(b.c.Nodes); w > 0 {
			b.add(b.nodesLine, "nodes", "%d %s: a witness is an embedded etcd vote, and with store.backend %s the agents do not vote (the store decides); remove the witness nodes", w, plural(w, "witness", "witnesses"), st.Backend)
		}
		if count == 0 || witnesses(b.c.Nodes) == count {
			b.add(b.nodesLine, "nodes", "every node is a witness; at least one node must run the service (witness: false)")
		}
		return
	}
	switch {
	case count == 2:
		b.add(b.nodesLine, "nodes", "2 nodes: two voting members cannot survive the loss of either; add a third vote with a witness (a node with `witness: true`, run with `haven witness`) or use 1 or 3 nodes; or let a shared database arbitrate (store.backend: postgres or mysql)")
	case count > maxVoters:
		b.add(b.nodesLine, "nodes", "%d nodes: at most %d voting members are supported, since every store write waits for a majority and more members only slow it down; use 3, 5 or 7 nodes", count, maxVoters)
	}
	// 4 or 6 voters are allowed: they are the steps of growing 3 -> 5 -> 7
	// one `haven members add` at a time. They survive no more failures than
	// one fewer, which config check's description shows.
	if witnesses(b.c.Nodes) == count {
		b.add(b.nodesLine, "nodes", "every node is a witness; at least one node must run the service (witness: false)")
	}
}

// address checks a host:port and that no other node address uses it.
func (b *builder) address(n *yaml.Node, field string) string {
	s, ok := b.str(n, field)
	if !ok {
		return ""
	}
	key, err := normaliseAddr(s)
	if err != nil {
		b.add(n.Line, field, "invalid address %q: %v; write it as host:port, e.g. 10.0.0.1:7101", s, err)
		return s
	}
	if other, dup := b.addrOwners[key]; dup {
		b.add(n.Line, field, "address %s is already used by %s (line %d); every api, peer and client address must be different", s, other, b.lines[other])
		return s
	}
	b.addrOwners[key] = field
	return s
}

// normaliseAddr checks a host:port and returns it in a form in which equal
// addresses compare equal.
func normaliseAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("not host:port")
	}
	if host == "" {
		return "", fmt.Errorf("the host is missing")
	}
	if strings.ContainsAny(host, " \t/") {
		return "", fmt.Errorf("the host %q is not a host name or IP address", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("the port %q is not a number from 1 to 65535", port)
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return strings.ToLower(host) + ":" + strconv.Itoa(p), nil
}

func (b *builder) service(f fields) {
	s := &b.c.Service
	s.Standby = StandbyHot
	s.StopSignal = "SIGTERM"
	s.StopGrace = defaultStopGrace
	s.Restart = service.RestartAlways
	s.RestartDelay = defaultRestartDelay
	n, ok := f["service"]
	if !ok {
		return
	}
	sf := b.mapping(n, "service", serviceKeys)
	if v, ok := sf["command"]; ok {
		s.Command, _ = b.command(v, "service.command")
	}
	if v, ok := sf["env"]; ok {
		s.Env, _ = b.env(v, "service.env")
	}
	if v, ok := sf["dir"]; ok {
		if dir, ok := b.str(v, "service.dir"); ok && dir != "" {
			// A directory written with ${VAR} is resolved per node later.
			if strings.Contains(dir, "$") {
				s.Dir = dir
			} else {
				s.Dir = b.resolve(dir)
			}
		}
	}
	if v, ok := sf["standby"]; ok {
		if x, ok := b.oneOf(v, "service.standby", string(StandbyHot), string(StandbyCold)); ok {
			s.Standby = Standby(x)
		}
	}
	if v, ok := sf["stop_signal"]; ok {
		if x, ok := b.str(v, "service.stop_signal"); ok {
			sig := strings.ToUpper(x)
			if !strings.HasPrefix(sig, "SIG") {
				sig = "SIG" + sig
			}
			if slices.Contains(stopSignals, sig) {
				s.StopSignal = sig
			} else {
				b.add(v.Line, "service.stop_signal", "unknown signal %q; allowed: %s (the SIG prefix is optional)", x, strings.Join(stopSignals, ", "))
			}
		}
	}
	if v, ok := sf["stop_grace"]; ok {
		if d, ok := b.duration(v, "service.stop_grace"); ok {
			s.StopGrace = d
		}
	}
	if v, ok := sf["restart"]; ok {
		if x, ok := b.oneOf(v, "service.restart", string(service.RestartAlways), string(service.RestartOnFailure), string(service.RestartNever)); ok {
			s.Restart = service.RestartPolicy(x)
		}
	}
	if v, ok := sf["restart_delay"]; ok {
		if d, ok := b.duration(v, "service.restart_delay"); ok {
			s.RestartDelay = d
		}
	}
	if v, ok := sf["containment"]; ok {
		if x, ok := b.oneOf(v, "service.containment", string(contain.ModeAuto), string(contain.ModeCGroup), string(contain.ModeProcessGroup)); ok {
			s.Containment = contain.Mode(x)
		}
	}
}

func (b *builder) hooks(f fields) {
	h := &b.c.Hooks
	h.OnPromote.Timeout = defaultPromoteTimeout
	h.PromoteBackoff = defaultPromoteBackoff
	n, ok := f["hooks"]
	if !ok {
		return
	}
	hf := b.mapping(n, "hooks", hooksKeys)
	if v, ok := hf["on_promote"]; ok {
		b.hook(v, "hooks.on_promote", &h.OnPromote)
	}
	if v, ok := hf["on_demote"]; ok {
		b.demoteSet = b.hook(v, "hooks.on_demote", &h.OnDemote)
	}
	if v, ok := hf["promote_backoff"]; ok {
		if d, ok := b.duration(v, "hooks.promote_backoff"); ok {
			h.PromoteBackoff = d
		}
	}
}

// hook fills h and reports whether a timeout was given (valid or not).
func (b *builder) hook(n *yaml.Node, path string, h *Hook) (timeoutSet bool) {
	hf := b.mapping(n, path, hookKeys)
	if v, ok := hf["command"]; ok {
		h.Command, _ = b.command(v, path+".command")
	}
	v, ok := hf["timeout"]
	if !ok {
		return false
	}
	if d, ok := b.duration(v, path+".timeout"); ok {
		h.Timeout = d
	} else if path == "hooks.on_demote" {
		b.timingBad = true
	}
	return true
}

func (b *builder) checks(f fields) {
	n, ok := f["checks"]
	if !ok {
		return
	}
	items, ok := b.sequence(n, "checks", "checks")
	if !ok {
		return
	}
	names := map[string]string{}
	for i, it := range items {
		path := indexField("checks", i)
		cf := b.mapping(it, path, checkKeys)
		if cf == nil {
			continue
		}
		c := Check{Interval: defaultCheckInterval, Rise: defaultRise, Fall: defaultFall}
		var kinds []string
		if v, ok := cf["http"]; ok {
			kinds = append(kinds, "http")
			c.HTTP = b.httpCheck(v, path+".http")
		}
		if v, ok := cf["tcp"]; ok {
			kinds = append(kinds, "tcp")
			c.TCP = b.tcpCheck(v, path+".tcp")
		}
		if v, ok := cf["exec"]; ok {
			kinds = append(kinds, "exec")
			c.Exec = b.execCheck(v, path+".exec")
		}
		if v, ok := cf["disk"]; ok {
			kinds = append(kinds, "disk")
			c.Disk = b.diskCheck(v, path+".disk")
		}
		switch len(kinds) {
		case 0:
			b.add(it.Line, path, "no kind of check; set exactly one of http, tcp or exec, or disk")
		case 1:
		default:
			b.add(it.Line, path, "sets %s; a check has exactly one of http, tcp, exec or disk, so split it into separate checks", strings.Join(kinds, " and "))
		}
		if v, ok := cf["name"]; ok {
			if s, ok := b.str(v, path+".name"); ok {
				if checkName.MatchString(s) {
					c.Name = s
				} else {
					b.add(v.Line, path+".name", "invalid name %q; use letters, digits, '.', '_' or '-', starting with a letter or digit", s)
				}
			}
		} else if len(kinds) > 0 {
			c.Name = fmt.Sprintf("%s-%d", kinds[0], i)
		}
		if c.Name != "" {
			if other, dup := names[c.Name]; dup {
				b.add(b.lineFor(path+".name"), path+".name", "duplicate check name %q (also %s on line %d); give each check its own name", c.Name, other, b.lineFor(other+".name"))
			} else {
				names[c.Name] = path
			}
		}
		if v, ok := cf["interval"]; ok {
			if d, ok := b.duration(v, path+".interval"); ok {
				c.Interval = d
			} else {
				b.timingBad = true
			}
		}
		c.Timeout = min(c.Interval, maxCheckTimeout)
		if v, ok := cf["timeout"]; ok {
			if d, ok := b.duration(v, path+".timeout"); ok {
				c.Timeout = d
			} else {
				b.timingBad = true
			}
		}
		if v, ok := cf["rise"]; ok {
			if x, ok := b.integer(v, path+".rise", 1, 1000); ok {
				c.Rise = x
			}
		}
		if v, ok := cf["fall"]; ok {
			if x, ok := b.integer(v, path+".fall", 1, 1000); ok {
				c.Fall = x
			}
		}
		b.c.Checks = append(b.c.Checks, c)
	}
}

func (b *builder) httpCheck(n *yaml.Node, path string) *HTTPCheck {
	f := b.mapping(n, path, httpKeys)
	h := &HTTPCheck{ExpectStatus: defaultExpectStatus}
	if v := b.required(f, path, "url", "give the URL to GET, e.g. url: http://${SERVICE_ADDR}/healthz"); v != nil {
		if s, ok := b.str(v, path+".url"); ok {
			if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
				h.URL = s
			} else {
				b.add(v.Line, path+".url", "invalid URL %q; it must start with http:// or https://", s)
			}
		}
	}
	if v, ok := f["expect_status"]; ok {
		if x, ok := b.integer(v, path+".expect_status", 100, 599); ok {
			h.ExpectStatus = x
		}
	}
	if v, ok := f["ca_file"]; ok {
		h.CAFile = b.path(v, path+".ca_file")
	}
	if v, ok := f["server_name"]; ok {
		h.ServerName, _ = b.str(v, path+".server_name")
	}
	if (h.CAFile != "" || h.ServerName != "") && strings.HasPrefix(h.URL, "http://") {
		b.add(n.Line, path, "ca_file and server_name apply to https:// URLs; use https:// or drop them")
	}
	return h
}

func (b *builder) tcpCheck(n *yaml.Node, path string) *TCPCheck {
	f := b.mapping(n, path, tcpKeys)
	t := &TCPCheck{}
	if v := b.required(f, path, "address", "give the host:port to connect to, e.g. address: ${SERVICE_ADDR}"); v != nil {
		if s, ok := b.str(v, path+".address"); ok {
			// An address built from ${VARS} is checked once expanded.
			if _, err := normaliseAddr(s); err != nil && !strings.Contains(s, "$") {
				b.add(v.Line, path+".address", "invalid address %q: %v; write it as host:port or ${VAR}", s, err)
			} else {
				t.Address = s
			}
		}
	}
	return t
}

func (b *builder) execCheck(n *yaml.Node, path string) *ExecCheck {
	f := b.mapping(n, path, execKeys)
	e := &ExecCheck{}
	if v := b.required(f, path, "command", "give the command to run, e.g. command: [\"/bin/true\"]"); v != nil {
		if argv, ok := b.command(v, path+".command"); ok {
			if len(argv) == 0 {
				b.add(v.Line, path+".command", "is empty; give the command to run, e.g. [\"/bin/true\"]")
			}
			e.Command = argv
		}
	}
	return e
}

func (b *builder) log(f fields) {
	b.c.Log = Log{Level: LogInfo, Format: LogText}
	n, ok := f["log"]
	if !ok {
		return
	}
	lf := b.mapping(n, "log", logKeys)
	if v, ok := lf["level"]; ok {
		if s, ok := b.oneOf(v, "log.level", string(LogDebug), string(LogInfo), string(LogWarn), string(LogError)); ok {
			b.c.Log.Level = LogLevel(s)
		}
	}
	if v, ok := lf["format"]; ok {
		if s, ok := b.oneOf(v, "log.format", string(LogText), string(LogJSON)); ok {
			b.c.Log.Format = LogFormat(s)
		}
	}
}
