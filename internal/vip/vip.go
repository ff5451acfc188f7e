// Package vip holds a virtual IP address on a local interface: it adds the
// address, announces it to the segment with gratuitous ARP (IPv4) or
// unsolicited neighbour advertisements (IPv6), and removes it.
//
// It decides nothing: the agent says when this node must hold the address
// (after it serves as active) and when it must let go (first step of a
// demotion, before the lease can expire in the store). Add and Remove are
// idempotent, so a caller may repeat them after a crash or a lost answer.
//
// The sockets and netlink requests are made on the calling goroutine's OS
// thread, in its network namespace; announcements repeated later reuse the
// sockets opened by Add, so they go out in the same namespace.
package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Sentinel errors the caller can act on. Each returned error wraps one of
// them when it applies, with a message that says what to do.
var (
	// ErrPermission: the process lacks CAP_NET_ADMIN (address) or
	// CAP_NET_RAW (announcements).
	ErrPermission = errors.New("permission denied")
	// ErrNoInterface: the configured interface does not exist on this host.
	ErrNoInterface = errors.New("no such interface")
	// ErrNotHeld: Refresh found the address gone (its lifetime ran out, or
	// someone removed it).
	ErrNotHeld = errors.New("the address is not on the interface")
)

// Options configure a VIP.
type Options struct {
	// Address is the virtual IP and the prefix length it gets on the
	// interface (e.g. 10.0.0.100/24 or fd00::100/64).
	Address netip.Prefix
	// Interface is the local interface that carries it.
	Interface string
	// Count is how many announcements follow an add (at least 1; the first
	// goes out before Add returns).
	Count int
	// Interval separates the announcements.
	Interval time.Duration
	// Log receives one line per failed announcement; nil discards.
	Log *slog.Logger
}

// VIP adds, announces and removes one address. Safe for concurrent use.
type VIP struct {
	opts Options

	mu       sync.Mutex
	stopAnno context.CancelFunc // stops the repeats of the last add
	annoDone chan struct{}
}

// New checks opts; it touches nothing on the host.
func New(opts Options) (*VIP, error) {
	if !opts.Address.IsValid() {
		return nil, errors.New("vip: no address; give one in CIDR form, e.g. 10.0.0.100/24")
	}
	if opts.Address.Addr().Zone() != "" || opts.Address.Addr().IsUnspecified() || opts.Address.Addr().IsMulticast() {
		return nil, fmt.Errorf("vip: %s cannot be a virtual IP; use a unicast address of the interface's network", opts.Address)
	}
	if opts.Interface == "" {
		return nil, errors.New("vip: no interface; name the interface that carries the address, e.g. eth0")
	}
	if opts.Count < 1 {
		opts.Count = 1
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.Address = netip.PrefixFrom(opts.Address.Addr().Unmap(), opts.Address.Bits())
	return &VIP{opts: opts}, nil
}

// Address is the virtual IP with its prefix length.
func (v *VIP) Address() netip.Prefix { return v.opts.Address }

// Interface is the interface that carries it.
func (v *VIP) Interface() string { return v.opts.Interface }

func (v *VIP) link() (netlink.Link, error) {
	l, err := netlink.LinkByName(v.opts.Interface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("vip %s: interface %q: %w on this host; set vip.interface (or the node's vip_interface) to one listed by `ip link`", v.opts.Address, v.opts.Interface, ErrNoInterface)
		}
		return nil, fmt.Errorf("vip %s: look up interface %q: %w", v.opts.Address, v.opts.Interface, permission(err, "CAP_NET_ADMIN"))
	}
	return l, nil
}

// nlAddr is the address for netlink; validFor > 0 gives it a lifetime in
// whole seconds (rounded down, at least 1s), after which the kernel removes
// it by itself.
func (v *VIP) nlAddr(validFor time.Duration) *netlink.Addr {
	a := v.opts.Address.Addr()
	bits := 32
	if a.Is6() {
		bits = 128
	}
	ipn := &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(v.opts.Address.Bits(), bits)}
	na := &netlink.Addr{IPNet: ipn}
	if a.Is6() {
		// Without it the address stays tentative (unusable) for the
		// duration of duplicate address detection, about a second; the
		// previous holder has removed it before this node adds it.
		na.Flags = unix.IFA_F_NODAD
	}
	if validFor > 0 {
		secs := int(max(validFor/time.Second, 1))
		na.ValidLft, na.PreferedLft = secs, secs
	}
	return na
}

// Held reports whether the address is on the interface now.
func (v *VIP) Held() (bool, error) {
	l, err := v.link()
	if err != nil {
		return false, err
	}
	return v.heldOn(l)
}

func (v *VIP) heldOn(l netlink.Link) (bool, error) {
	family := netlink.FAMILY_V4
	if v.opts.Address.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(l, family)
	if err != nil {
		return false, fmt.Errorf("vip %s: list addresses of %s: %w", v.opts.Address, v.opts.Interface, permission(err, "CAP_NET_ADMIN"))
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == v.opts.Address.Addr() {
			return true, nil
		}
	}
	return false, nil
}

// LinkUp reports whether the interface can carry the address to its
// network: administratively up with a carrier (operational state up, or
// unknown as dummy and tun interfaces report). If not, why says so.
func (v *VIP) LinkUp() (up bool, why string, err error) {
	l, err := v.link()
	if err != nil {
		return false, "", err
	}
	a := l.Attrs()
	switch {
	case a.Flags&net.FlagUp == 0:
		return false, fmt.Sprintf("interface %s is down", a.Name), nil
	case a.OperState == netlink.OperUp, a.OperState == netlink.OperUnknown:
		return true, "", nil
	}
	return false, fmt.Sprintf("interface %s has no carrier (%s)", a.Name, a.OperState), nil
}

// Add puts the address on the interface (or finds it there already), sends
// the first announcement and starts the repeats. It reports whether the
// address was newly added. With validFor > 0 the kernel removes the
// address by itself that long after the last Add or Refresh (whole
// seconds): the backstop for a holder that is frozen or killed and cannot
// remove it. An error from the announcement leaves the address in place:
// the node holds it, but neighbours may keep the old holder's MAC until
// their entries expire.
func (v *VIP) Add(validFor time.Duration) (added bool, err error) {
	l, err := v.link()
	if err != nil {
		return false, err
	}
	held, err := v.heldOn(l)
	if err != nil {
		return false, err
	}
	if err := netlink.AddrReplace(l, v.nlAddr(validFor)); err != nil {
		return false, fmt.Errorf("vip: add %s to %s: %w", v.opts.Address, v.opts.Interface, permission(err, "CAP_NET_ADMIN"))
	}
	added = !held
	a, err := v.announcer(l)
	if err != nil {
		return added, err
	}
	if err := a.send(); err != nil {
		a.close()
		return added, fmt.Errorf("vip: announce %s on %s: %w", v.opts.Address, v.opts.Interface, err)
	}
	v.mu.Lock()
	v.stopLocked()
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	v.stopAnno, v.annoDone = cancel, done
	v.mu.Unlock()
	go func() {
		defer close(done)
		defer a.close()
		for i := 1; i < v.opts.Count; i++ {
			select {
			case <-actx.Done():
				return
			case <-time.After(v.opts.Interval):
			}
			if err := a.send(); err != nil {
				v.opts.Log.Warn("vip announcement failed", "vip", v.opts.Address, "interface", v.opts.Interface, "err", err)
			}
		}
	}()
	return added, nil
}

// Remove takes the address off the interface, and stops the announcements.
// It reports whether the address was there. A missing interface is not an
// error: nothing can hold the address on it.
func (v *VIP) Remove() (removed bool, err error) {
	v.mu.Lock()
	v.stopLocked()
	v.mu.Unlock()
	l, err := v.link()
	if errors.Is(err, ErrNoInterface) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = netlink.AddrDel(l, v.nlAddr(0))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EADDRNOTAVAIL), errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return false, nil
	default:
		return false, fmt.Errorf("vip: remove %s from %s: %w", v.opts.Address, v.opts.Interface, permission(err, "CAP_NET_ADMIN"))
	}
}

// Refresh restarts the address's lifetime (see Add) without announcing it
// again. It returns ErrNotHeld if the address is gone: then the caller
// decides whether to Add it again.
func (v *VIP) Refresh(validFor time.Duration) error {
	l, err := v.link()
	if err != nil {
		return err
	}
	held, err := v.heldOn(l)
	if err != nil {
		return err
	}
	if !held {
		return fmt.Errorf("vip %s on %s: %w", v.opts.Address, v.opts.Interface, ErrNotHeld)
	}
	if err := netlink.AddrReplace(l, v.nlAddr(validFor)); err != nil {
		return fmt.Errorf("vip: refresh %s on %s: %w", v.opts.Address, v.opts.Interface, permission(err, "CAP_NET_ADMIN"))
	}
	return nil
}

// Lifetime is the longest lifetime (see Add) to give an address that must
// be gone from the kernel within left: whole seconds, less the kernel's
// timer slack (it removes an address up to about a quarter second after its
// lifetime for IPv4; more for IPv6, whose timer is coarser). Zero when no
// lifetime of at least a second fits.
func Lifetime(left time.Duration, ipv6 bool) time.Duration {
	slack := 250 * time.Millisecond
	if ipv6 {
		slack = 500 * time.Millisecond
	}
	if left -= slack; left < time.Second {
		return 0
	}
	return left.Truncate(time.Second)
}

// Close stops the announcements and waits for them; it leaves the address
// as it is.
func (v *VIP) Close() {
	v.mu.Lock()
	done := v.annoDone
	v.stopLocked()
	v.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (v *VIP) stopLocked() {
	if v.stopAnno != nil {
		v.stopAnno()
		v.stopAnno = nil
	}
}

// Preflight checks what Add will need without changing anything: the
// interface exists and this process may open the raw socket announcements
// use. (CAP_NET_ADMIN is only proved by an add; a process that can open a
// raw packet socket but not change addresses fails at the first Add, with
// ErrPermission.)
func (v *VIP) Preflight() error {
	l, err := v.link()
	if err != nil {
		return err
	}
	if v.opts.Address.Addr().Is4() {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("vip %s: open a raw socket on %s for gratuitous ARP: %w", v.opts.Address, l.Attrs().Name, permission(err, "CAP_NET_RAW"))
		}
		unix.Close(fd)
		return nil
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("vip %s: open an ICMPv6 socket on %s for neighbour advertisements: %w", v.opts.Address, l.Attrs().Name, permission(err, "CAP_NET_RAW"))
	}
	unix.Close(fd)
	return nil
}

// permission turns EPERM/EACCES into ErrPermission naming the capability.
func permission(err error, capability string) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w: needs %s (run the agent as root, or grant it with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW in its systemd unit): %v", ErrPermission, capability, err)
	}
	return err
}

// announcer sends one announcement per send.
type announcer struct {
	send  func() error
	close func()
}

func (v *VIP) announcer(l netlink.Link) (*announcer, error) {
	ifi, err := net.InterfaceByIndex(l.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("vip: interface %s: %w", v.opts.Interface, err)
	}
	ip := v.opts.Address.Addr()
	if len(ifi.HardwareAddr) != 6 {
		// Loopback, tun, ...: no neighbours to tell.
		return &announcer{send: func() error { return nil }, close: func() {}}, nil
	}
	if ip.Is4() {
		c, err := arp.Dial(ifi)
		if err != nil {
			return nil, fmt.Errorf("vip: open a raw socket on %s for gratuitous ARP: %w", ifi.Name, permission(err, "CAP_NET_RAW"))
		}
		// A gratuitous request and a reply, both broadcast, as keepalived
		// and vip-manager send: some hosts and switches heed only one.
		req, err1 := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, ethernet.Broadcast, ip)
		rep, err2 := arp.NewPacket(arp.OperationReply, ifi.HardwareAddr, ip, ifi.HardwareAddr, ip)
		if err := errors.Join(err1, err2); err != nil {
			c.Close()
			return nil, err
		}
		return &announcer{
			send: func() error {
				return errors.Join(c.WriteTo(req, ethernet.Broadcast), c.WriteTo(rep, ethernet.Broadcast))
			},
			close: func() { c.Close() },
		}, nil
	}
	c, _, err := ndp.Listen(ifi, ndp.Addr(ip.String()))
	if err != nil {
		return nil, fmt.Errorf("vip: open an ICMPv6 socket on %s for neighbour advertisements: %w", ifi.Name, permission(err, "CAP_NET_RAW"))
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true, // replace the old holder's MAC in neighbours' caches
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}},
	}
	allNodes := netip.MustParseAddr("ff02::1").WithZone(ifi.Name)
	return &announcer{
		send:  func() error { return c.WriteTo(na, nil, allNodes) },
		close: func() { c.Close() },
	}, nil
}
