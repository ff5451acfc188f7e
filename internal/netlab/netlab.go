// Package netlab builds throwaway network labs out of Linux network
// namespaces, veth pairs and bridges, for tests and drills that need real
// links to cut; everything it creates is named after the lab and removed by
// Close. It needs root.
package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
)

// seq numbers the labs of this process: the kernel deletes a namespace (and
// the veth ends inside it) asynchronously, so a lab must not reuse the names
// of one closed a moment ago.
var seq atomic.Int32

// Lab owns the namespaces, bridges and links it created.
type Lab struct {
	// ID is short and unique among the labs on the host; every name the
	// lab creates starts with prefix+ID.
	ID     string
	prefix string

	mu        sync.Mutex
	spaces    []string
	bridges   []string
	hostEnds  []string
	nextVeth  int
	nextSpace int
	bridgeOf  map[string]string // host end -> its bridge
}

// IP runs the ip command with args.
func IP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// New starts an empty lab whose names start with prefix (two or three
// letters: interface names hold 15 bytes).
func New(prefix string) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("network namespaces need root; run the tests as root (CI does)")
	}
	id := fmt.Sprint((os.Getpid()*10 + int(seq.Add(1))) % 100000)
	return &Lab{ID: id, prefix: prefix}, nil
}

func (l *Lab) name(kind string, i int) string {
	return fmt.Sprintf("%s%s%s%d", l.prefix, l.ID, kind, i)
}

// Bridge creates a bridge in the host namespace, up, with the host address
// cidr on it unless cidr is empty, and returns its name.
func (l *Lab) Bridge(cidr string) (string, error) {
	l.mu.Lock()
	br := l.name("b", len(l.bridges))
	l.bridges = append(l.bridges, br)
	l.mu.Unlock()
	if err := IP("link", "add", br, "type", "bridge"); err != nil {
		return "", err
	}
	// No STP delay, no multicast snooping surprises: a plain hub.
	_ = os.WriteFile("/sys/class/net/"+br+"/bridge/forward_delay", []byte("0"), 0o644)
	if cidr != "" {
		if err := IP("addr", "add", cidr, "dev", br); err != nil {
			return "", err
		}
	}
	return br, IP("link", "set", br, "up")
}

// Namespace creates a network namespace with its loopback up and returns
// its name.
func (l *Lab) Namespace() (string, error) {
	l.mu.Lock()
	ns := l.name("n", l.nextSpace)
	l.nextSpace++
	l.spaces = append(l.spaces, ns)
	l.mu.Unlock()
	if err := IP("netns", "add", ns); err != nil {
		return "", err
	}
	return ns, IP("-n", ns, "link", "set", "lo", "up")
}

// Attach connects namespace ns to bridge br with a veth pair: the inner end
// is called inner and gets the addresses cidrs (IPv6 ones without duplicate
// address detection, so they work at once). It returns the host end, which
// SetLink takes down to cut the link.
func (l *Lab) Attach(ns, br, inner string, cidrs ...string) (string, error) {
	l.mu.Lock()
	host := l.name("v", l.nextVeth)
	l.nextVeth++
	l.hostEnds = append(l.hostEnds, host)
	if l.bridgeOf == nil {
		l.bridgeOf = map[string]string{}
	}
	l.bridgeOf[host] = br
	l.mu.Unlock()
	cmds := [][]string{
		{"link", "add", host, "type", "veth", "peer", "name", inner, "netns", ns},
		{"link", "set", host, "master", br, "up"},
	}
	for _, c := range cidrs {
		args := []string{"-n", ns, "addr", "add", c, "dev", inner}
		if strings.Contains(c, ":") {
			args = append(args, "nodad")
		}
		cmds = append(cmds, args)
	}
	cmds = append(cmds, []string{"-n", ns, "link", "set", inner, "up"})
	for _, c := range cmds {
		if err := IP(c...); err != nil {
			return "", err
		}
	}
	return host, nil
}

// SetLink takes a host end (from Attach) down or up: down, nothing passes
// either way.
func (l *Lab) SetLink(host string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return IP("link", "set", host, state)
}

// Partition takes a host end (from Attach) off its bridge, or puts it back:
// off, nothing passes either way, but both ends keep their carrier, so the
// node sees a silent network rather than a dead interface (keepalived,
// for one, treats a dead interface as a fault and drops its addresses).
func (l *Lab) Partition(host string, cut bool) error {
	if cut {
		return IP("link", "set", host, "nomaster")
	}
	l.mu.Lock()
	br := l.bridgeOf[host]
	l.mu.Unlock()
	return IP("link", "set", host, "master", br)
}

// Command is cmd run inside namespace ns.
func Command(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Close removes everything the lab created.
func (l *Lab) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Host ends first: deleting them is synchronous, unlike a namespace's
	// own teardown.
	for _, h := range l.hostEnds {
		_ = exec.Command("ip", "link", "del", h).Run()
	}
	for _, ns := range l.spaces {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	for _, br := range l.bridges {
		_ = exec.Command("ip", "link", "del", br).Run()
	}
	l.hostEnds, l.spaces, l.bridges = nil, nil, nil
}

// Octet returns a number in 10..249 for the third octet of the lab's IPv4
// networks under base (e.g. "10.217"), one no address on the host uses yet.
func (l *Lab) Octet(base string) int {
	out, _ := exec.Command("ip", "-o", "-4", "addr").Output()
	var start int
	fmt.Sscan(l.ID, &start)
	for k := range 240 {
		s := 10 + (start+k)%240
		if !strings.Contains(string(out), fmt.Sprintf("%s.%d.", base, s)) {
			return s
		}
	}
	return 10 + start%240
}
