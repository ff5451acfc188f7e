package viplab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/netlab"
	"github.com/haven-ha/haven/internal/sample"
	"github.com/haven-ha/haven/internal/syncbuf"
	"github.com/haven-ha/haven/internal/testbin"
)

// havenBin is the binary under test, built once by TestMain.
var havenBin string

func TestMain(m *testing.M) { testbin.Main(m, &havenBin) }

const token = "viplab-token-0123456789abcdef"

// timings are the lan preset loosened for a loaded 2-core machine, as in
// internal/e2e: the tests check behaviour; bench/vip.sh measures speed.
const timings = harness.CITimings

// node is one haven agent in its own namespace: eth0 on the cluster
// network (etcd), eth1 on the client network (API, service, VIP).
type node struct {
	name, ns   string
	clusterEnd string // host end of eth0, to cut
	api        string
	clientEnd  string // host end of eth1
	clusterIP  string
	mac        string // eth1's
	witness    bool
	nsh        netns.NsHandle
	proc       *harness.Proc
	done       <-chan struct{} // closed when the agent last started has exited
	log        *syncbuf.Buffer
}

// cluster is three agents, a client namespace and the VIP.
type cluster struct {
	t      testing.TB
	lab    *netlab.Lab
	dir    string
	config string
	nodes  []*node
	client string // namespace
	vip    netip.Prefix
	port   string // the port the client GETs on the VIP; default 8080 (the service)
}

// newLab builds the topology: three node namespaces, each with eth0 on
// the cluster network and eth1 on the client network, and a client
// namespace on the client network. The host has an address on both.
func newLab(t testing.TB) *cluster {
	t.Helper()
	lab, err := netlab.New("vl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	o := lab.Octet("10.219")
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	clusterBr := must(lab.Bridge(fmt.Sprintf("10.218.%d.254/24", o)))
	clientBr := must(lab.Bridge(fmt.Sprintf("10.219.%d.254/24", o)))
	c := &cluster{t: t, lab: lab, dir: t.TempDir(), vip: netip.MustParsePrefix(fmt.Sprintf("10.219.%d.100/24", o))}
	for i := 1; i <= 3; i++ {
		ns := must(lab.Namespace())
		n := &node{name: fmt.Sprintf("n%d", i), ns: ns, api: fmt.Sprintf("10.219.%d.%d:7400", o, i), log: &syncbuf.Buffer{},
			clusterIP: fmt.Sprintf("10.218.%d.%d", o, i)}
		n.clusterEnd = must(lab.Attach(ns, clusterBr, "eth0", n.clusterIP+"/24"))
		n.clientEnd = must(lab.Attach(ns, clientBr, "eth1", fmt.Sprintf("10.219.%d.%d/24", o, i)))
		n.nsh = nsHandle(t, ns)
		n.mac = macOf(t, n.nsh, "eth1")
		c.nodes = append(c.nodes, n)
	}
	c.client = must(lab.Namespace())
	must(lab.Attach(c.client, clientBr, "eth0", fmt.Sprintf("10.219.%d.200/24", o)))
	return c
}

// clusterOpts shape a cluster's config; the zero value is three nodes
// running the sample service with the test timings.
type clusterOpts struct {
	timing  string                           // the timing:/timings: block; default the test timings
	extra   string                           // extra top-level YAML
	service func(c *cluster) string          // the service:/checks: YAML; default the sample service
	env     func(c *cluster, n *node) string // extra entries of a node's env map
	witness bool                             // n3 is a witness: two service nodes
	vip     string                           // extra fields of the vip: flow mapping, e.g. ", follow: proxy"
	node    func(c *cluster, n *node) string // extra fields of a node's flow mapping
}

// newCluster starts a haven agent on every node of a new lab, with the
// timings given (a timing:/timings: block) and extra top-level YAML.
func newCluster(t testing.TB, timing, extra string) *cluster {
	t.Helper()
	return newClusterWith(t, clusterOpts{timing: timing, extra: extra})
}

func newClusterWith(t testing.TB, o clusterOpts) *cluster {
	t.Helper()
	c := newLab(t)
	if o.timing == "" {
		o.timing = timings
	}
	c.config = filepath.Join(c.dir, "haven.yaml")
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: viplab\ndata_dir: %s\n%s\napi: {token: %s}\nlog: {level: debug}\ninsecure: true\n", filepath.Join(c.dir, "data"), o.timing, token)
	fmt.Fprintf(&b, "vip: {address: %s, interface: eth1, garp: {count: 3, interval: 100ms}%s}\n%s\nnodes:\n", c.vip, o.vip, o.extra)
	for i, n := range c.nodes {
		if o.witness && i == 2 {
			n.witness = true
			fmt.Fprintf(&b, "  - {name: %s, witness: true, peer: '%s:7401', client: '%s:7402'}\n", n.name, n.clusterIP, n.clusterIP)
			continue
		}
		env := "SERVICE_ADDR: '0.0.0.0:8080'"
		if o.env != nil {
			env += ", " + o.env(c, n)
		}
		more := ""
		if o.node != nil {
			more = o.node(c, n)
		}
		fmt.Fprintf(&b, "  - {name: %s, api: '%s', peer: '%s:7401', client: '%s:7402', env: {%s}%s}\n", n.name, n.api, n.clusterIP, n.clusterIP, env, more)
	}
	if o.service != nil {
		b.WriteString(o.service(c))
	} else {
		fmt.Fprintf(&b, `service:
  command: [%q, "sample-service"]
  stop_grace: 2s
checks:
  - name: sample
    http: {url: "http://127.0.0.1:8080/healthz"}
    interval: 100ms
    timeout: 100ms
    rise: 1
    fall: 1
`, havenBin)
	}
	if err := os.WriteFile(c.config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopAll)
	for _, n := range c.nodes {
		c.start(n)
	}
	return c
}

func macOf(t testing.TB, nsh netns.NsHandle, ifname string) string {
	t.Helper()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr.String()
}

func nsHandle(t testing.TB, ns string) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func (c *cluster) start(n *node) {
	c.t.Helper()
	sub := "agent"
	if n.witness {
		sub = "witness"
	}
	p, err := harness.Start(n.ns, n.log, havenBin, sub, "--config", c.config, "--node", n.name)
	if err != nil {
		c.t.Fatalf("start agent %s: %v", n.name, err)
	}
	n.proc, n.done = p, p.Done()
}

// agentPID is the haven process itself (ip netns exec execs it in place).
func (n *node) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := n.proc.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, n.name, err)
	}
}

func (c *cluster) stopAll() {
	var ps []*harness.Proc
	for _, n := range c.nodes {
		ps = append(ps, n.proc)
	}
	late := harness.Stop(15*time.Second, ps...) // a late one's goroutines go to its log
	for _, n := range c.nodes {
		if slices.Contains(late, n.proc) {
			c.t.Errorf("agent %s did not stop within 15s of SIGTERM", n.name)
			testbin.Stuck(c.t, n.name, n.log.String())
		}
	}
	if c.t.Failed() || os.Getenv("VIPLAB_LOGS") != "" {
		for _, n := range c.nodes {
			s := n.log.String()
			if len(s) > 40000 {
				s = s[len(s)-40000:]
			}
			c.t.Logf("---- log of %s ----\n%s", n.name, s)
		}
	}
}

// hc calls the agents' APIs (plain HTTP: the lab runs insecure).
var hc = api.NewClient(api.ClientOptions{Token: token, Who: "viplab", Timeout: 500 * time.Millisecond})

// lbCheck is 200 while node n's /lb-check says it serves, else 503.
func (c *cluster) lbCheck(n *node) int {
	if ok, _ := hc.LBCheck(context.Background(), n.api); ok {
		return http.StatusOK
	}
	return http.StatusServiceUnavailable
}

func (c *cluster) status(n *node) (api.Status, error) {
	return hc.Status(context.Background(), n.api)
}

// metrics is node n's /metrics page ("" on error).
func (c *cluster) metrics(n *node) string {
	m, _ := hc.Metrics(context.Background(), n.api)
	return m
}

// holds reports whether node n has the VIP on eth1 now (asked over netlink
// in its namespace, so it works while the agent is frozen or dead).
func (c *cluster) holds(n *node) bool {
	h, err := netlink.NewHandleAt(n.nsh)
	if err != nil {
		panic(err) // the lab is broken; may run off the test goroutine
	}
	defer h.Close()
	l, err := h.LinkByName("eth1")
	if err != nil {
		panic(err)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		panic(err)
	}
	for _, a := range addrs {
		if a.IP.Equal(net.IP(c.vip.Addr().AsSlice())) {
			return true
		}
	}
	return false
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !harness.Until(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// waitActive waits until exactly one node answers 200 on /lb-check and
// holds the VIP, and no other node holds it.
func (c *cluster) waitActive(d time.Duration, exclude ...*node) *node {
	c.t.Helper()
	return c.waitServing(d, false, exclude...)
}

// waitServing is waitActive; with leftovers, other nodes may still have the
// address (a killed or frozen agent cannot remove it).
//
// The same node must be seen so for 300 ms in a row: on a loaded machine a
// node can win, add the VIP and demote again (its service slow to answer
// its first check) within a single look.
func (c *cluster) waitServing(d time.Duration, leftovers bool, exclude ...*node) *node {
	c.t.Helper()
	var seen *node
	var since time.Time
	waitFor(c.t, d, "one active node holding the VIP for 300ms", func() bool {
		active := c.lookServing(leftovers, exclude)
		if active == nil {
			seen = nil
			return false
		}
		if active != seen {
			seen, since = active, time.Now()
		}
		return time.Since(since) >= 300*time.Millisecond
	})
	return seen
}

// lookServing is one look for waitServing: the one node that answers 200
// on /lb-check and holds the VIP, or nil.
func (c *cluster) lookServing(leftovers bool, exclude []*node) *node {
	var active *node
	for _, n := range c.nodes {
		if n.witness || slices.Contains(exclude, n) {
			continue
		}
		if c.lbCheck(n) == http.StatusOK {
			if active != nil {
				return nil
			}
			active = n
		}
	}
	if active == nil || !c.holds(active) {
		return nil
	}
	for _, n := range c.nodes {
		if n != active && c.holds(n) && !leftovers {
			return nil
		}
	}
	return active
}

// neighbour is the client's neighbour entry (MAC) for the VIP.
func (c *cluster) neighbour() string {
	out, _ := exec.Command("ip", "-n", c.client, "neigh", "show", c.vip.Addr().String(), "dev", "eth0").Output()
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// probe is one round of the client: a ping and a GET of the VIP.
type probe struct {
	at       time.Time
	pingOK   bool
	getOK    bool
	node     string // who answered the GET
	epoch    ha.Epoch
	getStart time.Time
	getEnd   time.Time
}

// client pings and GETs the VIP from the client namespace every 20 ms
// until stopped; every socket is made on an OS thread inside that
// namespace.
type client struct {
	mu     sync.Mutex
	probes []probe
	stop   chan struct{}
	done   chan struct{}
}

func (c *cluster) startClient() *client {
	c.t.Helper()
	cl := &client{stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	target := c.vip.Addr().String()
	port := c.port
	if port == "" {
		port = "8080"
	}
	nsName := c.client
	go func() {
		defer close(cl.done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromName(nsName)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		var pc *icmp.PacketConn
		if err == nil {
			pc, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		}
		ready <- err
		if err != nil {
			return
		}
		defer pc.Close()
		dst := &net.IPAddr{IP: net.ParseIP(target)}
		buf := make([]byte, 1500)
		for seq := 1; ; seq++ {
			select {
			case <-cl.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			p := probe{at: time.Now()}
			msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: seq & 0xffff, Data: []byte("viplab")}}
			wb, _ := msg.Marshal(nil)
			if _, err := pc.WriteTo(wb, dst); err == nil {
				_ = pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				for {
					n, _, err := pc.ReadFrom(buf)
					if err != nil {
						break
					}
					rm, err := icmp.ParseMessage(1, buf[:n])
					if err == nil && rm.Type == ipv4.ICMPTypeEchoReply {
						if e, ok := rm.Body.(*icmp.Echo); ok && e.Seq == seq&0xffff {
							p.pingOK = true
							break
						}
					}
				}
			}
			p.getStart = time.Now()
			p.node, p.epoch, p.getOK = get(target + ":" + port)
			p.getEnd = time.Now()
			cl.mu.Lock()
			cl.probes = append(cl.probes, p)
			cl.mu.Unlock()
		}
	}()
	if err := <-ready; err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.close)
	return cl
}

// get does one HTTP GET / on a new connection, on the calling thread.
func get(addr string) (string, ha.Epoch, bool) {
	d := net.Dialer{Timeout: 150 * time.Millisecond}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return "", 0, false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := conn.Write([]byte("GET / HTTP/1.0\r\nHost: vip\r\n\r\n")); err != nil {
		return "", 0, false
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", 0, false
	}
	defer resp.Body.Close()
	var r sample.Reply
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&r) != nil {
		return r.Node, 0, false
	}
	return r.Node, r.Epoch, true
}

func (cl *client) close() {
	select {
	case <-cl.stop:
	default:
		close(cl.stop)
	}
	<-cl.done
}

func (cl *client) since(t time.Time) []probe {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var out []probe
	for _, p := range cl.probes {
		if !p.at.Before(t) {
			out = append(out, p)
		}
	}
	return out
}

// outage is what the client saw from fault until the first probe in which
// both the ping and the GET succeeded and the GET was answered by want.
type outage struct {
	rto          time.Duration // from the fault
	gap          time.Duration // the longest time without an answered GET (by any node), up to rto
	failedPings  int
	failedGets   int
	answeredBy   string
	oldAfterNew  int // GETs answered by another node after want first answered
	probesInSpan int
}

func (cl *client) outage(fault time.Time, want func(node string) bool) (outage, bool) {
	var o outage
	ps := cl.since(fault)
	first := -1
	lastOK := fault
	for i, p := range ps {
		if first < 0 {
			if p.pingOK && p.getOK && want(p.node) {
				first = i
				o.rto = p.getEnd.Sub(fault)
				o.gap = max(o.gap, p.getEnd.Sub(lastOK))
				o.answeredBy = p.node
				o.probesInSpan = i + 1
				continue
			}
			if !p.pingOK {
				o.failedPings++
			}
			if !p.getOK {
				o.failedGets++
			} else {
				o.gap = max(o.gap, p.getEnd.Sub(lastOK))
				lastOK = p.getEnd
			}
			continue
		}
		if p.getOK && p.node != o.answeredBy {
			o.oldAfterNew++
		}
	}
	return o, first >= 0
}

// waitRecovered waits until the client reaches want through the VIP, and
// returns what it saw since fault.
func (c *cluster) waitRecovered(cl *client, fault time.Time, want *node, d time.Duration) outage {
	c.t.Helper()
	var o outage
	waitFor(c.t, d, "the client to reach "+want.name+" through the VIP", func() bool {
		var ok bool
		o, ok = cl.outage(fault, func(n string) bool { return n == want.name })
		return ok
	})
	return o
}

// runHaven runs the haven CLI from the host.
func runHaven(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, havenBin, args...).CombinedOutput()
	return string(out), err
}

// getFrom does one GET of addr from namespace ns, on a thread of its own.
func getFrom(ns, addr string) (string, ha.Epoch, bool) {
	type result struct {
		node  string
		epoch ha.Epoch
		ok    bool
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromName(ns)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		if err != nil {
			res <- result{}
			return
		}
		n, e, ok := get(addr)
		res <- result{n, e, ok}
	}()
	r := <-res
	return r.node, r.epoch, r.ok
}
