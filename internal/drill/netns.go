package drill

import (
	"fmt"
	"os/exec"

	"github.com/haven-ha/haven/internal/netlab"
)

// lab puts each node in its own network namespace with two links: a
// cluster link (etcd peers and clients) and a client link (agent API and
// service). The host has an address on both networks, so the proxy (which
// runs on the host) reaches the store and the backends, and cutting a
// node's cluster link partitions it from the quorum while clients still
// reach it. The namespaces, bridges and links are a netlab.Lab.
type lab struct {
	net    *netlab.Lab
	nodes  int
	subnet int
	ns     []string
	cutEnd []string // host end of each node's cluster link
}

// newLab creates the namespaces and links. It needs root.
func newLab(nodes int) (*lab, error) {
	n, err := netlab.New("hd")
	if err != nil {
		return nil, err
	}
	l := &lab{net: n, nodes: nodes, subnet: n.Octet("10.215")}
	ok := false
	defer func() {
		if !ok {
			l.close()
		}
	}()
	clusterB, err := n.Bridge(l.clusterIP(254) + "/24")
	if err != nil {
		return nil, err
	}
	client, err := n.Bridge(l.clientIP(254) + "/24")
	if err != nil {
		return nil, err
	}
	for i := 1; i <= nodes; i++ {
		ns, err := n.Namespace()
		if err != nil {
			return nil, err
		}
		l.ns = append(l.ns, ns)
		end, err := n.Attach(ns, clusterB, "eth0", l.clusterIP(i)+"/24")
		if err != nil {
			return nil, err
		}
		l.cutEnd = append(l.cutEnd, end)
		if _, err := n.Attach(ns, client, "eth1", l.clientIP(i)+"/24"); err != nil {
			return nil, err
		}
	}
	ok = true
	return l, nil
}

func (l *lab) clusterIP(i int) string { return fmt.Sprintf("10.215.%d.%d", l.subnet, i) }
func (l *lab) clientIP(i int) string  { return fmt.Sprintf("10.216.%d.%d", l.subnet, i) }

// cut takes node i's cluster link down: nothing passes either way.
func (l *lab) cut(i int) error { return l.net.SetLink(l.cutEnd[i-1], false) }

// heal undoes cut and cutEgress.
func (l *lab) heal(i int) error {
	err := l.net.SetLink(l.cutEnd[i-1], true)
	for _, dst := range l.peersOf(i) {
		_ = exec.Command("ip", "-n", l.ns[i-1], "route", "del", "blackhole", dst+"/32").Run()
	}
	return err
}

// cutEgress drops what node i sends on the cluster network, while what
// others send still reaches it: a one-way partition (blackhole routes in
// its namespace; this kernel has no tc or netfilter to do it otherwise).
func (l *lab) cutEgress(i int) error {
	for _, dst := range l.peersOf(i) {
		if err := netlab.IP("-n", l.ns[i-1], "route", "add", "blackhole", dst+"/32"); err != nil {
			return err
		}
	}
	return nil
}

func (l *lab) peersOf(i int) []string {
	out := []string{l.clusterIP(254)}
	for j := 1; j <= l.nodes; j++ {
		if j != i {
			out = append(out, l.clusterIP(j))
		}
	}
	return out
}

func (l *lab) close() { l.net.Close() }
