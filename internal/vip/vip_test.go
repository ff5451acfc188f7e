package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/netlab"
	"github.com/vishvananda/netns"
)

// segment is two would-be holders (a, b) and a client on one bridge.
type segment struct {
	lab        *netlab.Lab
	a, b, cl   string // namespaces
	v4, v6     netip.Prefix
	clientV4   string
	clientV6   string
	macA, macB string
	hostA      string // the host end of a's link
}

func newSegment(t *testing.T) *segment {
	t.Helper()
	lab, err := netlab.New("vt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	s := &segment{lab: lab}
	o := lab.Octet("10.217")
	br, err := lab.Bridge("")
	if err != nil {
		t.Fatal(err)
	}
	var spaces [3]string
	for i := range spaces {
		if spaces[i], err = lab.Namespace(); err != nil {
			t.Fatal(err)
		}
		end, err := lab.Attach(spaces[i], br, "eth0", fmt.Sprintf("10.217.%d.%d/24", o, i+1), fmt.Sprintf("fd17:%x::%d/64", o, i+1))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			s.hostA = end
		}
	}
	s.a, s.b, s.cl = spaces[0], spaces[1], spaces[2]
	s.clientV4, s.clientV6 = fmt.Sprintf("10.217.%d.3", o), fmt.Sprintf("fd17:%x::3", o)
	s.v4 = netip.MustParsePrefix(fmt.Sprintf("10.217.%d.100/24", o))
	s.v6 = netip.MustParsePrefix(fmt.Sprintf("fd17:%x::100/64", o))
	s.macA, s.macB = mac(t, s.a), mac(t, s.b)
	return s
}

func mac(t *testing.T, ns string) string {
	t.Helper()
	var m string
	inNS(t, ns, func() {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		m = ifi.HardwareAddr.String()
	})
	return m
}

// inNS runs f on an OS thread switched into namespace ns.
func inNS(t *testing.T, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // leave the thread locked: it dies with the goroutine
		}
		runtime.UnlockOSThread()
	}()
	f()
}

// enterNS switches the calling thread into namespace ns; the caller has
// locked the goroutine to it.
func enterNS(ns string) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return netns.Set(h)
}

// neighbour is the client's neighbour entry for ip: its MAC and state.
func neighbour(ns, ip string) (lladdr, state string) {
	out, _ := exec.Command("ip", "-n", ns, "neigh", "show", ip, "dev", "eth0").Output()
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			lladdr = f[i+1]
		}
	}
	if len(f) > 0 {
		state = f[len(f)-1]
	}
	return lladdr, state
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends one echo request at a time until one is answered, for up to
// 5 s (one lost in a loaded machine's scheduling is not the point).
func ping(ns, ip string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := netlab.Command(ns, "busybox", "ping", "-c", "1", "-W", "1", ip).CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ping %s from %s: %v: %s", ip, ns, err, out)
		}
	}
}

// TestLinkUp: an interface is fit to carry the VIP while it is up with a
// carrier; a cable pulled (the other end down) or the interface set down
// says which.
func TestLinkUp(t *testing.T) {
	s := newSegment(t)
	v, err := New(Options{Address: s.v4, Interface: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	look := func() (bool, string) {
		var up bool
		var why string
		inNS(t, s.a, func() {
			var err error
			if up, why, err = v.LinkUp(); err != nil {
				t.Fatal(err)
			}
		})
		return up, why
	}
	waitFor(t, 5*time.Second, "eth0 up", func() bool { up, _ := look(); return up })
	if err := s.lab.SetLink(s.hostA, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "eth0 without a carrier", func() bool {
		up, why := look()
		return !up && strings.Contains(why, "has no carrier")
	})
	if err := s.lab.SetLink(s.hostA, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "eth0 up again", func() bool { up, _ := look(); return up })
	if err := netlab.IP("-n", s.a, "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	if up, why := look(); up || !strings.Contains(why, "interface eth0 is down") {
		t.Fatalf("eth0 set down: up %v, why %q", up, why)
	}
}

// TestMovesBetweenHolders adds the address on a, checks the client reaches
// it there, moves it to b and checks the client's neighbour entry follows
// b's announcement alone (the client sends nothing in between), for IPv4
// (gratuitous ARP) and IPv6 (unsolicited neighbour advertisement).
func TestMovesBetweenHolders(t *testing.T) {
	s := newSegment(t)
	for _, tc := range []struct {
		name   string
		prefix netip.Prefix
	}{{"ipv4", s.v4}, {"ipv6", s.v6}} {
		t.Run(tc.name, func(t *testing.T) {
			ip := tc.prefix.Addr().String()
			opts := Options{Address: tc.prefix, Interface: "eth0", Count: 3, Interval: 50 * time.Millisecond}
			va, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			vb, _ := New(opts)
			defer va.Close()
			defer vb.Close()

			inNS(t, s.a, func() {
				if added, err := va.Add(0); err != nil || !added {
					t.Fatalf("first add: added=%v err=%v", added, err)
				}
				if added, err := va.Add(0); err != nil || added {
					t.Fatalf("second add must find the address there: added=%v err=%v", added, err)
				}
				if held, err := va.Held(); err != nil || !held {
					t.Fatalf("held=%v err=%v after add", held, err)
				}
			})
			if err := ping(s.cl, ip); err != nil {
				t.Fatal(err)
			}
			if mac, _ := neighbour(s.cl, ip); mac != s.macA {
				t.Fatalf("client's neighbour entry for %s is %q, want a's %s", ip, mac, s.macA)
			}

			inNS(t, s.a, func() {
				if removed, err := va.Remove(); err != nil || !removed {
					t.Fatalf("remove: removed=%v err=%v", removed, err)
				}
				if removed, err := va.Remove(); err != nil || removed {
					t.Fatalf("second remove must find nothing: removed=%v err=%v", removed, err)
				}
				if held, _ := va.Held(); held {
					t.Fatal("still held after remove")
				}
			})
			inNS(t, s.b, func() {
				if added, err := vb.Add(0); err != nil || !added {
					t.Fatalf("add on b: added=%v err=%v", added, err)
				}
			})
			waitFor(t, 3*time.Second, "the client's neighbour entry to point at b", func() bool {
				mac, _ := neighbour(s.cl, ip)
				return mac == s.macB
			})
			if err := ping(s.cl, ip); err != nil {
				t.Fatal(err)
			}
			inNS(t, s.b, func() {
				if _, err := vb.Remove(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestAnnouncesCount counts the gratuitous ARP requests the client sees
// after one add: Count of them, Interval apart.
func TestAnnouncesCount(t *testing.T) {
	s := newSegment(t)
	got := make(chan time.Time, 64)
	stop := make(chan struct{})
	done := make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		defer close(done)
		// Never unlocked: the thread, switched into the client's
		// namespace, dies with this goroutine.
		runtime.LockOSThread()
		if err := enterNS(s.cl); err != nil {
			ready <- err
			return
		}
		func() {
			fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(0x0806)))
			if err != nil {
				ready <- err
				return
			}
			defer syscall.Close(fd)
			tv := syscall.NsecToTimeval(int64(50 * time.Millisecond))
			_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
			ready <- nil
			buf := make([]byte, 128)
			vip := s.v4.Addr().As4()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n, _, err := syscall.Recvfrom(fd, buf, 0)
				// ARP over Ethernet: op at 6, sender IP at 14, target IP at 24.
				if err != nil || n < 28 || buf[7] != 1 {
					continue
				}
				if [4]byte(buf[14:18]) == vip && [4]byte(buf[24:28]) == vip {
					got <- time.Now()
				}
			}
		}()
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	// The segment carries frames from a to the client before the count
	// starts: on a loaded machine a fresh veth and bridge port can drop the
	// first announcement otherwise.
	if err := ping(s.a, s.clientV4); err != nil {
		t.Fatal(err)
	}
	v, _ := New(Options{Address: s.v4, Interface: "eth0", Count: 4, Interval: 100 * time.Millisecond})
	inNS(t, s.a, func() {
		if _, err := v.Add(0); err != nil {
			t.Fatal(err)
		}
	})
	var times []time.Time
	deadline := time.After(5 * time.Second)
	for len(times) < 4 {
		select {
		case at := <-got:
			times = append(times, at)
		case <-deadline:
			t.Fatalf("saw %d gratuitous ARP requests, want 4", len(times))
		}
	}
	close(stop)
	<-done
	if span := times[3].Sub(times[0]); span < 250*time.Millisecond {
		t.Fatalf("4 announcements 100ms apart came within %s", span)
	}
	v.Close()
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestErrors: a missing interface and missing capabilities give errors
// that say so, not a crash; removing from a missing interface is a no-op.
func TestErrors(t *testing.T) {
	s := newSegment(t)
	v, _ := New(Options{Address: s.v4, Interface: "nosuch0"})
	inNS(t, s.a, func() {
		if _, err := v.Add(0); !errors.Is(err, ErrNoInterface) || !strings.Contains(err.Error(), "nosuch0") {
			t.Fatalf("add on a missing interface: %v", err)
		}
		if err := v.Preflight(); !errors.Is(err, ErrNoInterface) {
			t.Fatalf("preflight on a missing interface: %v", err)
		}
		if removed, err := v.Remove(); err != nil || removed {
			t.Fatalf("remove on a missing interface: removed=%v err=%v", removed, err)
		}
	})
	for _, bad := range []Options{{Interface: "eth0"}, {Address: s.v4}, {Address: netip.MustParsePrefix("224.0.0.1/32"), Interface: "eth0"}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}

	// Without privileges: the same test binary as nobody, in namespace a.
	cmd := netlab.Command(s.a, os.Args[0], "-test.run=^TestUnprivilegedHelper$")
	cmd.Env = append(os.Environ(), "VIP_HELPER_ADDR="+s.v4.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "helper ok") {
		t.Fatalf("unprivileged helper did not run:\n%s", out)
	}
}

// TestUnprivilegedHelper runs only inside TestErrors, as an unprivileged
// user: Add and Preflight must fail with ErrPermission, naming the
// capability.
func TestUnprivilegedHelper(t *testing.T) {
	addr := os.Getenv("VIP_HELPER_ADDR")
	if addr == "" {
		return // not the helper process
	}
	// Drop root for good (every thread) before touching anything.
	if err := errors.Join(syscall.Setgroups(nil), syscall.Setgid(65534), syscall.Setuid(65534)); err != nil {
		t.Fatal(err)
	}
	v, err := New(Options{Address: netip.MustParsePrefix(addr), Interface: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Add(0); !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Fatalf("add without CAP_NET_ADMIN: %v", err)
	}
	if err := v.Preflight(); !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "CAP_NET_RAW") {
		t.Fatalf("preflight without CAP_NET_RAW: %v", err)
	}
	fmt.Println("helper ok")
}

// TestLifetime: an address added with a lifetime stays while it is
// refreshed and is removed by the kernel once refreshes stop, as it would
// be on a frozen or killed holder.
func TestLifetime(t *testing.T) {
	s := newSegment(t)
	for _, p := range []netip.Prefix{s.v4, s.v6} {
		v, _ := New(Options{Address: p, Interface: "eth0"})
		inNS(t, s.a, func() {
			if err := v.Refresh(time.Second); !errors.Is(err, ErrNotHeld) {
				t.Fatalf("refresh before add: %v", err)
			}
			if _, err := v.Add(time.Second); err != nil {
				t.Fatal(err)
			}
			for range 8 { // 1.6s > the 1s lifetime
				time.Sleep(200 * time.Millisecond)
				if err := v.Refresh(time.Second); err != nil {
					t.Fatalf("%s expired while refreshed: %v", p, err)
				}
			}
			stopped := time.Now()
			waitFor(t, 3*time.Second, p.String()+" to expire", func() bool {
				held, err := v.Held()
				return err == nil && !held
			})
			if took := time.Since(stopped); took < 700*time.Millisecond {
				t.Fatalf("%s expired %s after the last refresh, before its 1s lifetime", p, took)
			} else {
				t.Logf("%s expired %s after the last refresh (lifetime 1s)", p, took.Round(time.Millisecond))
			}
		})
		v.Close()
	}
}

func TestLifetimeRule(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		left time.Duration // until the fence deadline
		ipv6 bool
		want time.Duration
	}{
		{1700 * ms, false, time.Second}, // lan preset (2s lease, 300ms margin), just renewed
		{2500 * ms, false, 2 * time.Second},
		{2500 * ms, true, 2 * time.Second},
		{1249 * ms, false, 0}, // under a second would be left: no lifetime
		{1250 * ms, false, time.Second},
		{1499 * ms, true, 0},
		{700 * ms, false, 0}, // a 1s lease
		{8 * time.Second, false, 7 * time.Second},
		{-time.Second, false, 0},
	} {
		got := Lifetime(tt.left, tt.ipv6)
		if got != tt.want {
			t.Errorf("left %s, ipv6 %v: lifetime %s, want %s", tt.left, tt.ipv6, got, tt.want)
		}
		if slack := map[bool]time.Duration{false: 250 * ms, true: 500 * ms}[tt.ipv6]; got > 0 && got+slack > tt.left {
			t.Errorf("left %s: lifetime %s + slack %s outlives it", tt.left, got, slack)
		}
	}
}
