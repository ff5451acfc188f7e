package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/haven-ha/haven/internal/vip"
)

// VIP configures the virtual IP that follows the active node (`vip:`). The
// zero value is no VIP.
type VIP struct {
	Address      netip.Prefix  // the address and its prefix length on the interface
	Interface    string        // default interface; a node's vip_interface overrides it
	GARPCount    int           // gratuitous ARP / unsolicited NA sent after an add
	GARPInterval time.Duration // between them
	Follow       string        // FollowActive (default) or FollowProxy
	Line         int
}

// What the VIP follows (vip.follow).
const (
	// FollowActive: the active node holds the VIP while it serves.
	FollowActive = "active"
	// FollowProxy: one node whose proxy is healthy holds it, chosen by an
	// election of its own (package proxyvip).
	FollowProxy = "proxy"
)

// FollowsProxy reports whether the VIP follows a healthy proxy.
func (v VIP) FollowsProxy() bool { return v.Enabled() && v.Follow == FollowProxy }

// VIPElection is the name under which the VIP's own election (follow:
// proxy) keeps its session and leader key in the store: beside the
// cluster's, and never a cluster name ('.' is not allowed in one).
func (c *Config) VIPElection() string { return c.Cluster + ".vip" }

// VIPProxyCheck is the address node's agent connects to to tell whether
// its proxy is up (follow: proxy): proxy.listen with the node's ${VAR}s
// expanded, on loopback when the proxy listens on every address.
func (c *Config) VIPProxyCheck(node Node) string {
	host, port, err := net.SplitHostPort(Expand(c.Proxy.Listen, c.Vars(node)))
	if err != nil {
		return ""
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// Enabled reports whether a VIP is configured.
func (v VIP) Enabled() bool { return v.Address.IsValid() }

// VIP defaults and limits.
const (
	defaultGARPCount    = 5
	defaultGARPInterval = 200 * time.Millisecond
	maxGARPCount        = 100
	// VIPRemoveBudget is what fencing sets aside in fence_margin for taking
	// the address off the interface (one netlink request, well under a
	// millisecond on an idle host), like the on_demote timeout.
	VIPRemoveBudget = 50 * time.Millisecond
	// With follow: proxy each agent connects to its proxy this often,
	// waits this long for the connection (a loaded host is slow to accept;
	// a crashed proxy refuses at once), and counts it unhealthy after this
	// many failures in a row.
	VIPProxyCheckInterval = 100 * time.Millisecond
	VIPProxyCheckTimeout  = 500 * time.Millisecond
	VIPProxyCheckFall     = 3
)

var (
	vipKeys  = []string{"address", "interface", "garp", "follow"}
	garpKeys = []string{"count", "interval"}
)

// VIPInterface is the interface node carries the VIP on.
func (c *Config) VIPInterface(node Node) string {
	if node.VIPInterface != "" {
		return node.VIPInterface
	}
	return c.VIP.Interface
}

// VIPOptions translates the vip section into the vip package's options for
// node.
func (c *Config) VIPOptions(node Node) vip.Options {
	return vip.Options{
		Address:   c.VIP.Address,
		Interface: c.VIPInterface(node),
		Count:     c.VIP.GARPCount,
		Interval:  c.VIP.GARPInterval,
	}
}

func (b *builder) vip(f fields) {
	n, ok := f["vip"]
	if !ok {
		return
	}
	v := &b.c.VIP
	v.GARPCount, v.GARPInterval, v.Follow = defaultGARPCount, defaultGARPInterval, FollowActive
	v.Line = b.lineFor("vip")
	vf := b.mapping(n, "vip", vipKeys)
	if vf == nil {
		return
	}
	if a := b.required(vf, "vip", "address", "give the virtual IP with its prefix length, e.g. address: 10.0.0.100/24"); a != nil {
		if s, ok := b.str(a, "vip.address"); ok {
			if p, msg := parseVIP(s); msg != "" {
				b.add(a.Line, "vip.address", "%s", msg)
			} else {
				v.Address = p
			}
		}
	}
	if i, ok := vf["interface"]; ok {
		v.Interface = b.ifname(i, "vip.interface")
	}
	if g, ok := vf["garp"]; ok {
		gf := b.mapping(g, "vip.garp", garpKeys)
		if c, ok := gf["count"]; ok {
			if x, ok := b.integer(c, "vip.garp.count", 1, maxGARPCount); ok {
				v.GARPCount = x
			}
		}
		if d, ok := gf["interval"]; ok {
			if x, ok := b.duration(d, "vip.garp.interval"); ok {
				if x < 10*time.Millisecond || x > 10*time.Second {
					b.add(d.Line, "vip.garp.interval", "is %s; use 10ms to 10s, e.g. 200ms", x)
				} else {
					v.GARPInterval = x
				}
			}
		}
	}
	if fo, ok := vf["follow"]; ok {
		if x, ok := b.oneOf(fo, "vip.follow", FollowActive, FollowProxy); ok {
			v.Follow = x
			if x == FollowProxy {
				b.followProxy(fo.Line)
			}
		}
	}
	if v.Interface == "" {
		for _, node := range b.c.Nodes {
			if !node.Witness && node.VIPInterface == "" {
				b.add(v.Line, "vip.interface", "missing, and node %s has no vip_interface; name the interface that carries the VIP, e.g. interface: eth0 (a node's vip_interface overrides it)", node.Name)
				break
			}
		}
	}
	if !v.Address.IsValid() {
		return
	}
	for _, node := range b.c.Nodes {
		for _, a := range []string{node.API, node.Peer, node.Client, node.Backend} {
			if host, _, ok := strings.Cut(a, ":"); ok && host == v.Address.Addr().String() {
				b.add(v.Line, "vip.address", "%s is also node %s's own address (%s); the VIP moves between nodes, so give it an address no node has", v.Address.Addr(), node.Name, a)
			}
		}
	}
}

// followProxy checks what follow: proxy needs: a proxy on every node that
// takes connections addressed to the VIP, so it must listen on every
// address (the VIP comes and goes; binding to it would fail).
func (b *builder) followProxy(line int) {
	p := b.c.Proxy
	if p.Listen == "" {
		b.add(line, "vip.follow", "follow: proxy needs a proxy on every node: add proxy: {listen: 0.0.0.0:PORT} (with standalone: true when `haven proxy` runs beside each agent), or use follow: active")
		return
	}
	if strings.Contains(p.Listen, "$") {
		for _, n := range b.c.Nodes {
			if !n.Witness {
				b.followProxyListen(line, Expand(p.Listen, b.c.Vars(n)), " (node "+n.Name+")")
			}
		}
		return
	}
	b.followProxyListen(line, p.Listen, "")
}

func (b *builder) followProxyListen(line int, listen, where string) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return // proxy.listen's own check says what is wrong
	}
	switch {
	case host == "0.0.0.0" && b.c.VIP.Address.Addr().Is6():
		b.add(line, "vip.follow", "follow: proxy: proxy.listen is %s%s, which takes IPv4 connections only, and the VIP %s is IPv6; listen on every address of both families: listen: '[::]:%s' (or :%s)", listen, where, b.c.VIP.Address.Addr(), port, port)
		return
	case host == "", host == "0.0.0.0", host == "::":
		return
	}
	b.add(line, "vip.follow", "follow: proxy: proxy.listen is %s%s, which does not take connections to the VIP %s; listen on every address, e.g. listen: 0.0.0.0:%s (or :%s)", listen, where, b.c.VIP.Address.Addr(), port, port)
}

// parseVIP reads a VIP in CIDR form; the message says what is wrong.
func parseVIP(s string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		if _, err2 := netip.ParseAddr(strings.TrimSpace(s)); err2 == nil {
			return p, fmt.Sprintf("%q has no prefix length; add the interface network's, e.g. %s/24 (IPv4) or %s/64 (IPv6)", s, s, s)
		}
		return p, fmt.Sprintf("%q is not an address in CIDR form; write e.g. 10.0.0.100/24 or fd00::100/64", s)
	}
	a := p.Addr()
	switch {
	case a.Zone() != "":
		return p, fmt.Sprintf("%q has a zone; leave it out and name the interface in vip.interface", s)
	case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback(), a.IsLinkLocalUnicast(), a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return p, fmt.Sprintf("%s is not an address a node can take over (unspecified, loopback, link-local or multicast); use a unicast address of the clients' network", a)
	case a.Is4() && p.Bits() < 31 && (a == p.Masked().Addr() || isBroadcast(p)):
		return p, fmt.Sprintf("%s is the network's or broadcast address of %s; pick a host address in it", a, p.Masked())
	}
	return netip.PrefixFrom(a.Unmap(), p.Bits()), ""
}

func isBroadcast(p netip.Prefix) bool {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return v&host == host
}

// ifname reads a network interface name.
func (b *builder) ifname(n *yaml.Node, field string) string {
	s, ok := b.str(n, field)
	if !ok {
		return ""
	}
	if s == "" || len(s) > 15 || strings.ContainsAny(s, "/ \t:") || s == "." || s == ".." {
		b.add(n.Line, field, "%q is not an interface name; give one as `ip link` lists it (at most 15 characters, no '/', ':' or spaces), e.g. eth0", s)
		return ""
	}
	return s
}
