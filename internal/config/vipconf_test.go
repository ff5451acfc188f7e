package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestVIPAbsent(t *testing.T) {
	c := mustParse(t, "/etc/haven.yaml", proxyNodes)
	if c.VIP.Enabled() {
		t.Fatalf("no vip section, but VIP = %+v", c.VIP)
	}
}

func TestVIPSection(t *testing.T) {
	text := strings.Replace(proxyNodes, "    backend: 127.0.0.1:8102\n", "    backend: 127.0.0.1:8102\n    vip_interface: bond0\n", 1) +
		"vip:\n  address: 10.0.0.100/24\n  interface: eth0\n  garp: {count: 3, interval: 100ms}\n"
	c := mustParse(t, "/etc/haven.yaml", text)
	want := VIP{Address: netip.MustParsePrefix("10.0.0.100/24"), Interface: "eth0", GARPCount: 3, GARPInterval: 100 * time.Millisecond, Follow: "active", Line: 16}
	if c.VIP != want {
		t.Fatalf("VIP = %+v, want %+v", c.VIP, want)
	}
	if o := c.VIPOptions(c.Nodes[0]); o.Interface != "eth0" || o.Address != want.Address || o.Count != 3 || o.Interval != 100*time.Millisecond {
		t.Fatalf("n1 options %+v", o)
	}
	if o := c.VIPOptions(c.Nodes[1]); o.Interface != "bond0" {
		t.Fatalf("n2 must use its vip_interface, got %+v", o)
	}
	if d := c.Describe(); !strings.Contains(d, "vip: 10.0.0.100/24 follows the active node") || !strings.Contains(d, "on bond0") || !strings.Contains(d, "sets aside 50ms of fence_margin") {
		t.Fatalf("describe lacks the vip:\n%s", d)
	}

	v6 := mustParse(t, "/etc/haven.yaml", proxyNodes+"vip: {address: 'fd00::100/64', interface: eth0}\n")
	if v6.VIP.Address != netip.MustParsePrefix("fd00::100/64") || v6.VIP.GARPCount != defaultGARPCount || v6.VIP.GARPInterval != defaultGARPInterval {
		t.Fatalf("ipv6 vip with defaults: %+v", v6.VIP)
	}
}

// TestVIPFollowProxy: follow: proxy with a proxy on every node, on every
// address: the agent checks its proxy on loopback and elects under a name
// of its own.
func TestVIPFollowProxy(t *testing.T) {
	for listen, want := range map[string]string{"0.0.0.0:8080": "127.0.0.1:8080", ":8080": "127.0.0.1:8080", "[::]:8080": "[::1]:8080"} {
		c := mustParse(t, "/etc/haven.yaml", proxyNodes+"proxy: {listen: '"+listen+"', standalone: true}\nvip: {address: 10.0.0.100/24, interface: eth0, follow: proxy}\n")
		if !c.VIP.FollowsProxy() || c.VIP.Follow != FollowProxy {
			t.Fatalf("listen %s: VIP = %+v", listen, c.VIP)
		}
		if got := c.VIPProxyCheck(c.Nodes[0]); got != want {
			t.Fatalf("listen %s: proxy check address %q, want %q", listen, got, want)
		}
		if c.VIPElection() != "demo.vip" {
			t.Fatalf("election name %q", c.VIPElection())
		}
		if d := c.Describe(); !strings.Contains(d, "follows a node whose proxy is healthy") || !strings.Contains(d, want) {
			t.Fatalf("describe lacks follow: proxy:\n%s", d)
		}
	}
}

// TestVIPFollowProxyIPv6: an IPv6 VIP needs a proxy that takes IPv6
// connections; one on 0.0.0.0 would pass its loopback check and hold a VIP
// that no client can reach through it.
func TestVIPFollowProxyIPv6(t *testing.T) {
	_, err := Parse("/etc/haven.yaml", []byte(proxyNodes+"proxy: {listen: '0.0.0.0:8080', standalone: true}\nvip: {address: 'fd00::100/64', interface: eth0, follow: proxy}\n"))
	if err == nil || !strings.Contains(err.Error(), "takes IPv4 connections only") {
		t.Fatalf("ipv6 VIP with the proxy on 0.0.0.0: err = %v", err)
	}
	for _, listen := range []string{"[::]:8080", ":8080"} {
		if _, err := Parse("/etc/haven.yaml", []byte(proxyNodes+"proxy: {listen: '"+listen+"', standalone: true}\nvip: {address: 'fd00::100/64', interface: eth0, follow: proxy}\n")); err != nil {
			t.Fatalf("ipv6 VIP with the proxy on %s: %v", listen, err)
		}
	}
}

func TestVIPErrors(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		line   int
		field  string
		phrase string
	}{
		{"no address", proxyNodes + "vip: {interface: eth0}\n", 15, "vip.address", "missing; give the virtual IP"},
		{"no prefix", proxyNodes + "vip: {address: 10.0.0.100, interface: eth0}\n", 15, "vip.address", "has no prefix length"},
		{"not cidr", proxyNodes + "vip: {address: vip.example, interface: eth0}\n", 15, "vip.address", "not an address in CIDR form"},
		{"network address", proxyNodes + "vip: {address: 10.0.0.0/24, interface: eth0}\n", 15, "vip.address", "network's or broadcast address"},
		{"broadcast", proxyNodes + "vip: {address: 10.0.0.255/24, interface: eth0}\n", 15, "vip.address", "network's or broadcast address"},
		{"loopback", proxyNodes + "vip: {address: 127.0.0.9/8, interface: lo}\n", 15, "vip.address", "not an address a node can take over"},
		{"node's own", strings.Replace(proxyNodes, "backend: 127.0.0.1:8101", "backend: 10.0.0.7:8101", 1) + "vip: {address: 10.0.0.7/24, interface: eth0}\n", 15, "vip.address", "also node n1's own address"},
		{"no interface", proxyNodes + "vip: {address: 10.0.0.100/24}\n", 15, "vip.interface", "missing, and node n1 has no vip_interface"},
		{"bad interface", proxyNodes + "vip: {address: 10.0.0.100/24, interface: 'eth0:1'}\n", 15, "vip.interface", "not an interface name"},
		{"unknown key", proxyNodes + "vip:\n  address: 10.0.0.100/24\n  interface: eth0\n  priority: 100\n", 18, "vip.priority", `unknown field "priority"`},
		{"garp count", proxyNodes + "vip:\n  address: 10.0.0.100/24\n  interface: eth0\n  garp: {count: 0}\n", 18, "vip.garp.count", "between 1 and 100"},
		{"garp interval", proxyNodes + "vip:\n  address: 10.0.0.100/24\n  interface: eth0\n  garp: {interval: 1ms}\n", 18, "vip.garp.interval", "use 10ms to 10s"},
		{"follow proxy without a proxy", proxyNodes + "vip:\n  address: 10.0.0.100/24\n  interface: eth0\n  follow: proxy\n", 18, "vip.follow", "needs a proxy on every node"},
		{"follow proxy on one address", proxyNodes + "proxy: {listen: 10.0.0.1:8080}\nvip:\n  address: 10.0.0.100/24\n  interface: eth0\n  follow: proxy\n", 19, "vip.follow", "listen on every address, e.g. listen: 0.0.0.0:8080"},
		{"follow proxy on a node's address", strings.Replace(proxyNodes, "    backend: 127.0.0.1:8101\n", "    backend: 127.0.0.1:8101\n    env: {IP: 10.0.0.1}\n", 1) + "proxy: {listen: '${IP}:8080'}\nvip:\n  address: 10.0.0.100/24\n  interface: eth0\n  follow: proxy\n", 20, "vip.follow", "(node n1)"},
		{"follow proxy, standalone without listen", proxyNodes + "proxy: {standalone: true}\nvip:\n  address: 10.0.0.100/24\n  interface: eth0\n  follow: proxy\n", 19, "vip.follow", "needs a proxy on every node"},
		{"follow other", proxyNodes + "vip:\n  address: 10.0.0.100/24\n  interface: eth0\n  follow: leader\n", 18, "vip.follow", `invalid value "leader"`},
		{"no room to remove", proxyNodes + "timings: {fence_margin: 40ms}\nvip: {address: 10.0.0.100/24, interface: eth0}\n", 15, "timings.fence_margin", "demote rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("haven.yaml", []byte(tt.text))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *Error, got %v", err)
			}
			for _, p := range cerr.Problems {
				if p.Line == tt.line && p.Field == tt.field && strings.Contains(p.Msg, tt.phrase) {
					return
				}
			}
			t.Fatalf("want line %d field %s containing %q; got:\n%v", tt.line, tt.field, tt.phrase, err)
		})
	}
}
