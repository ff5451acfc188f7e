package drill

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
)

// lab puts each node in its own network namespace with two links: a
// cluster link (etcd peers and clients) and a client link (agent API and
// service). The host has an address on both networks, so the proxy (which
// runs on the host) reaches the store and the backends, and cutting a
// node's cluster link partitions it from the quorum while clients still
// reach it.
type lab struct {
	id               string
	nodes            int
	subnet           int
	ns               []string
	clusterB, client string // bridges
}

var labSeq atomic.Int32

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newLab creates the namespaces and links. It needs root.
func newLab(nodes int) (*lab, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("network namespaces need root")
	}
	seq := int(labSeq.Add(1))
	id := (os.Getpid()*10 + seq) % 1000000
	l := &lab{id: fmt.Sprint(id), nodes: nodes}
	l.subnet = pickSubnet((os.Getpid() + seq) % 240)
	l.clusterB, l.client = "hdc"+l.id, "hdk"+l.id
	ok := false
	defer func() {
		if !ok {
			l.close()
		}
	}()
	for _, br := range []string{l.clusterB, l.client} {
		if err := ipCmd("link", "add", br, "type", "bridge"); err != nil {
			return nil, err
		}
		if err := ipCmd("link", "set", br, "up"); err != nil {
			return nil, err
		}
	}
	if err := ipCmd("addr", "add", l.clusterIP(254)+"/24", "dev", l.clusterB); err != nil {
		return nil, err
	}
	if err := ipCmd("addr", "add", l.clientIP(254)+"/24", "dev", l.client); err != nil {
		return nil, err
	}
	for i := 1; i <= nodes; i++ {
		ns := fmt.Sprintf("hd%sn%d", l.id, i)
		l.ns = append(l.ns, ns)
		if err := ipCmd("netns", "add", ns); err != nil {
			return nil, err
		}
		if err := ipCmd("-n", ns, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
		for _, link := range []struct{ host, inner, br, ip string }{
			{l.clusterLink(i), "eth0", l.clusterB, l.clusterIP(i)},
			{fmt.Sprintf("hd%sk%d", l.id, i), "eth1", l.client, l.clientIP(i)},
		} {
			for _, args := range [][]string{
				{"link", "add", link.host, "type", "veth", "peer", "name", link.inner, "netns", ns},
				{"link", "set", link.host, "master", link.br, "up"},
				{"-n", ns, "addr", "add", link.ip + "/24", "dev", link.inner},
				{"-n", ns, "link", "set", link.inner, "up"},
			} {
				if err := ipCmd(args...); err != nil {
					return nil, err
				}
			}
		}
	}
	ok = true
	return l, nil
}

// pickSubnet returns a third octet not in use on the host for the drill's
// networks (10.215.S.0/24 and 10.216.S.0/24), starting at 10+start.
func pickSubnet(start int) int {
	out, _ := exec.Command("ip", "-o", "-4", "addr").Output()
	for k := range 240 {
		s := 10 + (start+k)%240
		if !strings.Contains(string(out), fmt.Sprintf("10.215.%d.", s)) {
			return s
		}
	}
	return 10 + start
}

func (l *lab) clusterLink(i int) string { return fmt.Sprintf("hd%sc%d", l.id, i) }
func (l *lab) clusterIP(i int) string   { return fmt.Sprintf("10.215.%d.%d", l.subnet, i) }
func (l *lab) clientIP(i int) string    { return fmt.Sprintf("10.216.%d.%d", l.subnet, i) }

// cut takes node i's cluster link down: nothing passes either way.
func (l *lab) cut(i int) error { return ipCmd("link", "set", l.clusterLink(i), "down") }

// heal undoes cut and cutEgress.
func (l *lab) heal(i int) error {
	err := ipCmd("link", "set", l.clusterLink(i), "up")
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
		if err := ipCmd("-n", l.ns[i-1], "route", "add", "blackhole", dst+"/32"); err != nil {
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

func (l *lab) close() {
	for i, ns := range l.ns {
		// Delete the host ends first: that is synchronous, unlike the
		// namespace's own teardown.
		_ = exec.Command("ip", "link", "del", l.clusterLink(i+1)).Run()
		_ = exec.Command("ip", "link", "del", fmt.Sprintf("hd%sk%d", l.id, i+1)).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	for _, br := range []string{l.clusterB, l.client} {
		_ = exec.Command("ip", "link", "del", br).Run()
	}
}
