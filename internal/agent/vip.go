package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/vip"
)

// vipDriver keeps the virtual IP on this node exactly while it serves as
// active. The add happens after the node serves (never before), the removal
// is the first step of every demotion (see demote), and a reconciler
// removes it as soon as the node stops serving, whatever the reason.
type vipDriver struct {
	v    *vip.VIP
	mu   sync.Mutex // one add or remove at a time; the held flag follows
	held atomic.Bool
	wake chan struct{}
	// expires: the timings leave room for a lifetime in the kernel (see
	// vipRefresh); without it, only this agent removes the address.
	expires bool
	// linkDown says why the VIP's interface cannot carry it ("" while it
	// can): the node is then unhealthy (effectiveHealth), as keepalived
	// drops a VIP on a link without carrier.
	linkDown atomic.Pointer[string]
}

// vipLinkDown is why this node's VIP interface cannot carry the VIP, ""
// while it can (or there is no VIP that follows the active).
func (a *Agent) vipLinkDown() string {
	if a.vip == nil {
		return ""
	}
	if why := a.vip.linkDown.Load(); why != nil {
		return *why
	}
	return ""
}

// vipLookLink looks at the VIP's interface and re-evaluates the node's
// health when it changes.
func (a *Agent) vipLookLink() {
	up, why, err := a.vip.v.LinkUp()
	if err != nil {
		up, why = false, err.Error()
	}
	if up {
		why = ""
	} else {
		why = "the virtual IP's link: " + why
	}
	if why == a.vipLinkDown() {
		return
	}
	a.vip.linkDown.Store(&why)
	if why != "" {
		a.log.Warn("the virtual IP's interface cannot carry it; this node is unhealthy until it can", "vip", a.vip.v.Address(), "why", why)
	} else {
		a.log.Info("the virtual IP's interface is up again", "vip", a.vip.v.Address(), "interface", a.vip.v.Interface())
	}
	signal(a.healthC)
}

// newVIP sets up the driver when the config has a VIP; nil otherwise.
func (a *Agent) newVIP() error {
	if !a.cfg.VIP.Enabled() || a.cfg.VIP.FollowsProxy() {
		return nil // follow: proxy has an election of its own (proxyvip.go)
	}
	opts := a.cfg.VIPOptions(a.node)
	opts.Log = a.log.With("part", "vip")
	v, err := vip.New(opts)
	if err != nil {
		return err
	}
	t := a.cfg.Timing
	a.vip = &vipDriver{v: v, wake: make(chan struct{}, 1), expires: vip.Lifetime(t.LeaseTTL-t.FenceMargin, v.Address().Addr().Is6()) > 0}
	if !a.vip.expires {
		a.log.Warn("lease_ttl − fence_margin is too short for the kernel to expire the virtual IP by itself; a frozen or killed agent's copy stays until the agent runs again", "lease_ttl", t.LeaseTTL, "fence_margin", t.FenceMargin)
	}
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "haven_vip_held", Help: "1 while this node holds the virtual IP (vip.address) on its interface.",
	}, func() float64 {
		if a.vip.held.Load() {
			return 1
		}
		return 0
	}))
	return nil
}

// vipHeld is the address this node holds now, for its status record.
func (a *Agent) vipHeld() string {
	if a.cfg.VIP.FollowsProxy() {
		return a.followProxyHeld()
	}
	if a.vip == nil || !a.vip.held.Load() {
		return ""
	}
	return a.vip.v.Address().String()
}

// vipLoop is the reconciler: it adds the VIP once the node serves as
// active and removes it when it does not. It looks whenever the role
// changes and every 100 ms, so that a node that stopped serving by the
// clock alone (its lease ran out before the machine stepped) lets go too.
func (a *Agent) vipLoop(ctx context.Context) {
	// A node that starts is not active: a copy left by a crash or a kill -9
	// must go before anything else.
	a.vipRemove("agent started: not active; removing a leftover copy")
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.vip.wake:
		case <-a.clk.After(100 * time.Millisecond):
		}
		a.vipLookLink()
		serving := a.State().Role == ha.RoleActive && a.Serving()
		switch {
		case serving && !a.vip.held.Load():
			a.vipAdd()
		case serving:
			a.vipRefresh()
		case !serving && a.vip.held.Load():
			a.vipRemove("not serving as active")
		}
	}
}

func (a *Agent) vipAdd() {
	d := a.vip
	d.mu.Lock()
	defer d.mu.Unlock()
	// Checked again under the lock: a demotion that removed the VIP while
	// this add waited has changed the role first.
	if st := a.State(); st.Role != ha.RoleActive || !a.Serving() || d.held.Load() {
		return
	}
	var life time.Duration // zero: no lifetime
	if d.expires {
		if life = a.vipLifetime(); life == 0 {
			return // too little of the lease left; the next renewal brings more
		}
	}
	start := a.clk.Now()
	added, err := d.v.Add(life)
	took := a.clk.Since(start)
	if err != nil {
		a.log.Error("cannot add the virtual IP; clients of the VIP cannot reach this active node", "vip", d.v.Address(), "interface", d.v.Interface(), "err", err)
		a.record(ha.Event{Kind: "vip", To: "add failed", Reason: err.Error(), Duration: took, Epoch: a.State().Epoch})
		if !added {
			return
		}
	}
	d.held.Store(true)
	a.log.Info("virtual IP added", "vip", d.v.Address(), "interface", d.v.Interface(), "took", took, "was_there", !added)
	a.record(ha.Event{Kind: "vip", To: "added", Reason: d.v.Address().String() + " on " + d.v.Interface(), Duration: took, Epoch: a.State().Epoch})
	signal(a.publishC)
}

// vipRefresh restarts the address's lifetime in the kernel, so that it
// stays while this node serves and goes by itself by the fence deadline if
// this process freezes or dies. A VIP found gone is added again (with its
// announcements) on the next look.
func (a *Agent) vipRefresh() {
	d := a.vip
	if !d.expires {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.held.Load() {
		return
	}
	life := a.vipLifetime()
	if life == 0 {
		// The kernel keeps the lifetime it has (it runs out by the serving
		// deadline); once it has, say so: the next renewal adds it again.
		if held, err := d.v.Held(); err == nil && !held {
			d.held.Store(false)
			a.log.Warn("the virtual IP's lifetime ran out before a renewal extended it", "vip", d.v.Address())
			a.record(ha.Event{Kind: "vip", To: "expired", Reason: "no lease renewal in time to extend its lifetime"})
			signal(a.publishC)
		}
		return
	}
	if err := d.v.Refresh(life); err != nil {
		d.held.Store(false)
		a.log.Warn("the virtual IP was gone from the interface; adding it again", "vip", d.v.Address(), "err", err)
		a.record(ha.Event{Kind: "vip", To: "lost", Reason: err.Error()})
		signal(d.wake)
	}
}

// vipLifetime is how long the kernel may keep the VIP after now without
// another refresh: it must be gone by the time this node stops serving
// anyway, the fence deadline (valid_until − fence_margin), or later while
// every peer has granted failsafe. Zero when less than a second fits.
func (a *Agent) vipLifetime() time.Duration {
	st := a.State()
	until := st.ValidUntil.Add(-a.cfg.Timing.FenceMargin)
	if a.mcfg.Failsafe && st.FailsafeUntil.After(until) {
		until = st.FailsafeUntil
	}
	return vip.Lifetime(until.Sub(a.clk.Now()), a.vip.v.Address().Addr().Is6())
}

// vipRemove takes the VIP off; why goes to the log and the event.
func (a *Agent) vipRemove(why string) {
	d := a.vip
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	start := a.clk.Now()
	removed, err := d.v.Remove()
	took := a.clk.Since(start)
	if err != nil {
		a.log.Error("cannot remove the virtual IP", "vip", d.v.Address(), "interface", d.v.Interface(), "err", err)
		a.record(ha.Event{Kind: "vip", To: "remove failed", Reason: why + ": " + err.Error(), Duration: took})
		return
	}
	wasHeld := d.held.Swap(false)
	if removed || wasHeld {
		a.log.Info("virtual IP removed", "vip", d.v.Address(), "interface", d.v.Interface(), "why", why, "took", took)
		a.record(ha.Event{Kind: "vip", To: "removed", Reason: why, Duration: took})
		signal(a.publishC)
	}
}

// vipClose stops the announcements; the address is left as it is (Run
// has removed it when the node demoted).
func (a *Agent) vipClose() {
	if a.vip != nil {
		a.vip.v.Close()
	}
}
