package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/proxyvip"
	"github.com/haven-ha/haven/internal/vip"
)

// StartFollowProxy runs the virtual IP's own election (vip.follow: proxy)
// beside the agent: this node takes part while its proxy answers on
// proxy.listen, and holds the VIP while it wins. The agent's status,
// metrics and history show it as they show a VIP that follows the active.
// dial opens the election's own connection to the store (the composition
// root's dialVIPElection). stop removes the VIP, hands the key back and waits.
func (a *Agent) StartFollowProxy(ctx context.Context, dial func(context.Context) (ha.Coordinator, error)) (stop func(), err error) {
	cfg, node := a.cfg, a.node
	log := a.log.With("part", "vip")
	opts := cfg.VIPOptions(node)
	opts.Log = log
	v, err := vip.New(opts)
	if err != nil {
		return nil, err
	}
	probe := cfg.VIPProxyCheck(node)
	health, err := check.NewRunner([]config.Check{{
		Name:     "proxy " + probe,
		TCP:      &config.TCPCheck{Address: probe},
		Interval: config.VIPProxyCheckInterval,
		Timeout:  config.VIPProxyCheckTimeout,
		Rise:     1,
		Fall:     config.VIPProxyCheckFall,
	}}, nil, log.With("check", "proxy"), check.WithClock(a.clk))
	if err != nil {
		return nil, fmt.Errorf("vip.follow proxy: %w", err)
	}
	ipv6 := v.Address().Addr().Is6()
	t := cfg.Timing
	e, err := proxyvip.New(proxyvip.Options{
		Node:           node.Name,
		Dial:           dial,
		Address:        v,
		Describe:       v.Address().String() + " on " + v.Interface(),
		Lifetime:       func(left time.Duration) time.Duration { return vip.Lifetime(left, ipv6) },
		Health:         health.Updates(),
		LinkUp:         v.LinkUp,
		LeaseTTL:       t.LeaseTTL,
		RenewInterval:  t.RenewInterval,
		RenewTimeout:   t.RenewTimeout,
		FenceMargin:    t.FenceMargin,
		PromoteBackoff: cfg.Hooks.PromoteBackoff,
		EtcdElection:   t.EtcdElection,
		NoLockDelay:    cfg.LockDelay == config.LockDelayOff,
		Clock:          a.clk,
		Log:            log,
		Record:         a.record,
		Changed:        func() { signal(a.publishC) },
	})
	if err != nil {
		return nil, err
	}
	if vip.Lifetime(t.LeaseTTL-t.FenceMargin, ipv6) == 0 {
		log.Warn("lease_ttl − fence_margin is too short for the kernel to expire the virtual IP by itself; a frozen or killed agent's copy stays until the agent runs again", "lease_ttl", t.LeaseTTL, "fence_margin", t.FenceMargin)
	}
	a.followProxy.Store(e)
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "haven_vip_held", Help: "1 while this node holds the virtual IP (vip.address) on its interface.",
	}, func() float64 {
		if e.Held() {
			return 1
		}
		return 0
	}), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "haven_vip_proxy_healthy", Help: "1 while this node's proxy answers its agent's check (vip.follow: proxy): the node may hold the VIP.",
	}, func() float64 {
		if e.State().Healthy {
			return 1
		}
		return 0
	}), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "haven_vip_lock_delay_seconds", Help: "How long this node's latest win of the VIP's election (vip.follow: proxy) waited on the lock-delay before adding the address (0: none waited; docs/stores.md \"Lock-delay\").",
	}, func() float64 {
		if d := e.LockDelay(); d != nil {
			return d.Waited.Seconds()
		}
		return 0
	}))
	ctx, cancel := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() { defer close(healthDone); health.Run(ctx) }()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			log.Error("virtual IP election stopped", "err", err)
		}
	}()
	log.Info("virtual IP follows a healthy proxy", "vip", v.Address(), "interface", v.Interface(), "proxy_check", probe, "election", cfg.VIPElection())
	return func() { cancel(); <-done; <-healthDone }, nil
}

// followProxyHeld is the VIP this node holds by the follow: proxy election
// ("" when none, or no such election).
func (a *Agent) followProxyHeld() string {
	e := a.followProxy.Load()
	if e == nil || !e.Held() {
		return ""
	}
	return a.cfg.VIP.Address.String()
}
