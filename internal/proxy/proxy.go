package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// Source is what the proxy needs from the coordination store: a stream of
// snapshots (ha.Coordinator has it).
type Source interface {
	Watch(ctx context.Context) <-chan ha.Snapshot
}

// Node is one node the proxy may send traffic to.
type Node struct {
	Name    string
	Backend string // host:port of its service
	API     string // host:port of its agent API, for /lb-check
}

// Options configure a Proxy.
type Options struct {
	Config   Settings
	Mode     ha.Mode       // cluster mode; "" is active-passive
	LeaseTTL time.Duration // the store's lease: how long a view of it stays usable
	Nodes    []Node
	Source   Source
	// Ping, when set, confirms that the store is reachable (a quorum read).
	// Without it the view counts as fresh for as long as the watch runs.
	Ping func(ctx context.Context) error
	// Fresh, when set, returns the last moment the store was known to be
	// reachable (an agent knows it from its lease renewals), instead of Ping.
	Fresh func() time.Time
	Log   *slog.Logger
	// APITLS, when set, makes the /lb-check probes HTTPS with it (the
	// cluster's mutual TLS); nil probes in plain HTTP.
	APITLS *tls.Config
	// Clock times routing: held requests, quarantines, probes (default:
	// the system clock). Socket deadlines always use the kernel's.
	Clock clock.Clock
}

// Timing of the failover path.
const (
	fastProbeEvery = 5 * time.Millisecond
	retryAfter     = "1"
)

// bystanderProbeEvery is how often a node that no decision asks about is
// probed (active-passive: any node but the store's active; a new active is
// probed at once, every fastProbeEvery, on the change). Probing it every
// probe_interval only woke its agent (issue 20).
const bystanderProbeEvery = time.Second

// Proxy routes clients to the node(s) that should get traffic.
type Proxy struct {
	cfg      Settings
	opts     Options
	clk      clock.Clock
	log      *slog.Logger
	backends map[string]*backend
	names    []string
	metrics  *metrics
	signer   *signer
	cert     atomic.Pointer[tls.Certificate]
	rr       atomic.Uint64

	targets     atomic.Pointer[targetSet]
	held        atomic.Int64
	expiredWait atomic.Int64 // held requests whose set ran out before the router renewed it
	probeC      chan probeResult
	suspectC    chan suspicion
	freshC      chan time.Time

	probeClient *http.Client
	bufs        sync.Pool
}

// targetSet is one published routing decision. changed is closed when a
// newer one replaces it, which releases every held request at once.
type targetSet struct {
	gen     uint64
	nodes   []*backend
	names   []string
	changed chan struct{}
	// until is when this decision runs out unless the router renews it
	// (Unix nanoseconds; 0: never): the first moment a target's lease or
	// probe could have expired. Requests check it themselves, so that a
	// router goroutine running late cannot send them past it.
	until atomic.Int64
}

// usable reports whether a request may go to ts's nodes at now, as a try
// after the decision numbered after.
func (ts *targetSet) usable(now time.Time, after uint64) bool {
	if len(ts.nodes) == 0 || ts.gen <= after {
		return false
	}
	u := ts.until.Load()
	return u == 0 || now.UnixNano() < u
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (t *targetSet) get(name string) *backend {
	for _, b := range t.nodes {
		if b.name == name {
			return b
		}
	}
	return nil
}

// backend is one node's service as the proxy reaches it.
type backend struct {
	name, addr, api string
	pool            *pool
	kick            chan struct{} // ask its prober for fast probes
	latency         prometheus.Observer
	// servedSent is when the latest request that the node answered (with
	// anything but a 503) was sent to it, in Unix ns: evidence, for the
	// quarantine, that it serves.
	servedSent atomic.Int64

	mu    sync.Mutex
	long  map[*longConn]struct{} // WebSocket and TCP relays
	drain clock.Timer
	inSet bool

	// bystander: no routing decision uses this node's probe now (see
	// bystanderProbeEvery); set by the brain from each snapshot.
	bystander atomic.Bool
}

type probeResult struct {
	node string
	ok   bool
	at   time.Time
}

// New checks the options and loads the files they name (certificate,
// sticky key, backend CA).
func New(o Options) (*Proxy, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Mode == "" {
		o.Mode = ha.ModeActivePassive
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Source == nil {
		return nil, errors.New("proxy: no store to watch")
	}
	cfg := o.Config
	p := &Proxy{
		cfg:      cfg,
		opts:     o,
		clk:      o.Clock,
		log:      o.Log.With("part", "proxy"),
		backends: map[string]*backend{},
		probeC:   make(chan probeResult, 64),
		suspectC: make(chan suspicion, 64),
		freshC:   make(chan time.Time, 4),
	}
	p.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	var btls *tls.Config
	if cfg.BackendTLS.Enabled {
		btls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.BackendTLS.ServerName}
		if cfg.BackendTLS.CAFile != "" {
			pem, err := os.ReadFile(cfg.BackendTLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("proxy: backend CA: %w", err)
			}
			btls.RootCAs = x509.NewCertPool()
			if !btls.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("proxy: backend CA %s holds no PEM certificate", cfg.BackendTLS.CAFile)
			}
		}
	}
	for _, n := range o.Nodes {
		if n.Backend == "" {
			continue
		}
		bt := btls
		if bt != nil && bt.ServerName == "" {
			bt = bt.Clone()
			bt.ServerName, _, _ = net.SplitHostPort(n.Backend)
		}
		p.backends[n.Name] = &backend{
			name: n.Name, addr: n.Backend, api: n.API,
			pool: newPool(n.Backend, bt),
			kick: make(chan struct{}, 1),
			long: map[*longConn]struct{}{},
		}
		p.names = append(p.names, n.Name)
	}
	if len(p.names) == 0 {
		return nil, errors.New("proxy: no node has a backend; add backend: host:port to the nodes")
	}
	if cfg.TLS.Enabled() {
		if err := p.ReloadTLS(); err != nil {
			return nil, err
		}
	}
	if cfg.Sticky.Mode == AffinityCookie {
		key := []byte(cfg.Sticky.Key)
		if cfg.Sticky.KeyFile != "" {
			b, err := os.ReadFile(cfg.Sticky.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("proxy: sticky key: %w", err)
			}
			key = []byte(strings.TrimSpace(string(b)))
		}
		if len(key) < 16 {
			return nil, fmt.Errorf("proxy: the sticky key is %d bytes; use at least 16", len(key))
		}
		p.signer = &signer{key: key}
	}
	timeout := probeTimeout(cfg.ProbeInterval)
	p.probeClient = &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil, // a probe must not go through HTTP_PROXY
			MaxIdleConnsPerHost: 4,
			DisableCompression:  true,
			DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
			TLSClientConfig:     o.APITLS,
			ForceAttemptHTTP2:   false,
		},
	}
	p.metrics = newMetrics(p)
	for _, b := range p.backends {
		b.latency = p.metrics.latency.WithLabelValues(b.name)
	}
	p.targets.Store(&targetSet{gen: 1, changed: make(chan struct{})})
	return p, nil
}

// probeTimeout bounds one /lb-check probe.
func probeTimeout(interval time.Duration) time.Duration {
	return min(max(2*interval, 200*time.Millisecond), time.Second)
}

// probeValid is how long a 200 from /lb-check is trusted: two missed probes
// and a slow one.
func (p *Proxy) probeValid() time.Duration { return ProbeValid(p.cfg.ProbeInterval) }

// ProbeValid is how long a 200 from /lb-check is trusted when the proxy
// probes every interval (Input.ProbeValid).
func ProbeValid(interval time.Duration) time.Duration {
	return 2*interval + probeTimeout(interval)
}

// FastProbeEvery is how often the proxy probes a node it was told about
// (a new leader, a failed request) until it answers 200, for at most
// hold_timeout.
const FastProbeEvery = fastProbeEvery

// Reload is what a SIGHUP runs (package reload): it reads the TLS
// certificate again when the proxy terminates TLS. A failed reload is
// logged and the old certificate kept.
func (p *Proxy) Reload() {
	if !p.cfg.TLS.Enabled() {
		return
	}
	if err := p.ReloadTLS(); err != nil {
		p.log.Error("reload TLS certificate; keeping the old one", "err", err)
	} else {
		p.log.Info("TLS certificate reloaded")
	}
}

// ReloadTLS reads the certificate and key files again. Connections already
// open keep theirs; a failed reload keeps the old certificate.
func (p *Proxy) ReloadTLS() error {
	if !p.cfg.TLS.Enabled() {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(p.cfg.TLS.Cert, p.cfg.TLS.Key)
	if err != nil {
		return fmt.Errorf("proxy: load certificate %s: %w", p.cfg.TLS.Cert, err)
	}
	p.cert.Store(&cert)
	return nil
}

func (p *Proxy) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return p.cert.Load(), nil
		},
	}
}

// Targets returns the nodes the proxy sends traffic to now.
func (p *Proxy) Targets() []string { return p.targets.Load().names }

// Run listens on the configured address and serves until ctx ends.
func (p *Proxy) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen on %s: %w", p.cfg.Listen, err)
	}
	return p.Serve(ctx, ln)
}

// Serve serves clients on ln until ctx ends, then shuts down: it stops
// accepting, lets requests finish for drain_grace, and closes the rest.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	goRun := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	goRun(p.brain)
	for _, b := range p.backends {
		goRun(func(ctx context.Context) { p.prober(ctx, b) })
	}
	if p.opts.Ping != nil {
		goRun(p.pinger)
	}
	if p.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", p.cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("proxy: listen for metrics on %s: %w", p.cfg.MetricsListen, err)
		}
		msrv := &http.Server{Handler: promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
	}
	p.log.Info("proxy started", "listen", ln.Addr().String(), "mode", p.cfg.Mode, "tls", p.cfg.TLS.Enabled(), "nodes", p.names)
	var err error
	if p.cfg.Mode == ProtocolTCP {
		if p.cfg.TLS.Enabled() {
			ln = tls.NewListener(ln, p.tlsConfig())
		}
		err = p.serveTCP(ctx, ln)
	} else {
		err = p.serveHTTP(ctx, ln)
	}
	cancel()
	p.closeAllLong()
	wg.Wait()
	for _, b := range p.backends {
		b.pool.closeIdle()
		b.pool.closeBusy()
	}
	p.log.Info("proxy stopped")
	return err
}

func (p *Proxy) serveHTTP(ctx context.Context, ln net.Listener) error {
	l := p.cfg.Limits
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	srv.Protocols.SetHTTP2(true)
	errc := make(chan error, 1)
	go func() {
		if p.cfg.TLS.Enabled() {
			srv.TLSConfig = p.tlsConfig()
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), p.cfg.DrainGrace)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// brain owns the routing inputs: it folds in snapshots, probe results and
// suspicions, and publishes a new target set whenever Decide's answer
// changes.
func (p *Proxy) brain(ctx context.Context) {
	in := Input{
		Mode:       p.opts.Mode,
		Nodes:      p.names,
		LeaseTTL:   p.opts.LeaseTTL,
		Probes:     map[string]Probe{},
		ProbeValid: p.probeValid(),
	}
	if in.LeaseTTL <= 0 {
		in.LeaseTTL = time.Second
	}
	// A suspected node is readmitted only by a probe sent a quarantine after
	// the failure (Quarantine).
	q := NewQuarantine(p.cfg.ProbeInterval)
	watch := p.opts.Source.Watch(ctx)
	timer := p.clk.NewTimer(time.Hour)
	defer timer.Stop()
	lastWhy := ""
	for {
		select {
		case snap, ok := <-watch:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				// A source whose watch ended: start another after a pause.
				select {
				case <-p.clk.After(100 * time.Millisecond):
				case <-ctx.Done():
					return
				}
				watch = p.opts.Source.Watch(ctx)
				continue
			}
			if snap.Behind {
				continue // no news, and no contact: Fresh stays as it was
			}
			old := in.Snapshot.Leader
			in.Snapshot, in.Seen = snap, true
			for _, n := range p.names {
				p.backends[n].bystander.Store(in.Mode != ha.ModeActiveActive && n != snap.Leader.Node)
			}
			if p.opts.Fresh == nil {
				in.Fresh = later(in.Fresh, p.clk.Now())
			}
			if snap.Leader != old && snap.Leader.Node != "" {
				q.NewLeader(snap.Leader.Node)
				p.kickProbe(snap.Leader.Node)
			}
			if in.Mode == ha.ModeActiveActive {
				for _, n := range p.names {
					p.kickProbe(n)
				}
			}
		case r := <-p.probeC:
			if !q.Trusted(r.node, r.at, r.ok) {
				continue // too soon after a failure to trust a 200
			}
			in.Probes[r.node] = Probe{OK: r.ok, At: r.at}
		case s := <-p.suspectC:
			n := s.node
			var served time.Time
			if b := p.backends[n]; b != nil {
				served = b.served()
			}
			now := p.clk.Now()
			if !q.Suspect(n, s.sent, now, served) {
				continue
			}
			in.Probes[n] = Probe{OK: false, At: now}
			p.kickProbe(n)
		case t := <-p.freshC:
			in.Fresh = later(in.Fresh, t)
		case <-timer.C():
		case <-ctx.Done():
			return
		}
		now := p.clk.Now()
		switch {
		case p.opts.Fresh != nil:
			in.Fresh = later(in.Fresh, p.opts.Fresh())
		case p.opts.Ping == nil && in.Seen:
			in.Fresh = now
		}
		d := Decide(in, now)
		if len(d.Targets) == 0 && d.Why != lastWhy {
			p.log.Debug("no target", "why", d.Why)
		}
		lastWhy = d.Why
		p.publish(d)
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		wait := time.Hour
		if !d.Recheck.IsZero() {
			wait = max(d.Recheck.Sub(now), time.Millisecond)
		}
		timer.Reset(wait)
	}
}

// quarantine is how long a node stays out after its strike-th strike:
// ProbeInterval doubled per strike, at most maxQuarantine.
func quarantine(interval time.Duration, strike int) time.Duration {
	q := max(interval, time.Millisecond)
	for i := 1; i < strike && q < maxQuarantine; i++ {
		q *= 2
	}
	return min(q, maxQuarantine)
}

// maxQuarantine bounds quarantine.
const maxQuarantine = 2 * time.Second

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// publish installs d's targets if they differ from the current ones, and
// starts or stops the drain of nodes that left or came back.
func (p *Proxy) publish(d Decision) {
	cur := p.targets.Load()
	if slices.Equal(cur.names, d.Targets) {
		// The same decision, valid for longer. Requests that found it run
		// out are waiting: they need a new set to wake them. (They count
		// themselves in expiredWait before they look again, so one of the
		// two sees the other.)
		cur.until.Store(unixNano(d.Recheck))
		if len(cur.nodes) == 0 || p.expiredWait.Load() == 0 {
			return
		}
		p.replace(cur, cur.names, cur.nodes, d.Recheck)
		return
	}
	var nodes []*backend
	for _, n := range d.Targets {
		nodes = append(nodes, p.backends[n])
	}
	next := p.replace(cur, d.Targets, nodes, d.Recheck)
	p.log.Info("targets changed", "from", cur.names, "to", d.Targets, "why", d.Why)
	for _, b := range p.backends {
		in := next.get(b.name) != nil
		p.metrics.target(b.name, in)
		b.mu.Lock()
		was := b.inSet
		b.inSet = in
		switch {
		case in && !was && b.drain != nil:
			b.drain.Stop()
			b.drain = nil
		case !in && was:
			b.pool.closeIdle()
			b.drain = p.clk.AfterFunc(p.cfg.DrainGrace, func() { p.cut(b, "drain grace over") })
		}
		b.mu.Unlock()
		if !in && len(next.nodes) > 0 {
			// Another node has taken over: long-lived connections to this
			// one must reconnect there.
			b.closeLong()
		}
	}
}

// replace installs the target set that follows cur, good until until, and
// wakes the requests waiting on cur.
func (p *Proxy) replace(cur *targetSet, names []string, nodes []*backend, until time.Time) *targetSet {
	next := &targetSet{gen: cur.gen + 1, names: names, nodes: nodes, changed: make(chan struct{})}
	next.until.Store(unixNano(until))
	p.targets.Store(next)
	close(cur.changed)
	return next
}

// cut ends whatever still runs to b after its drain grace.
func (p *Proxy) cut(b *backend, why string) {
	b.mu.Lock()
	if b.inSet {
		b.mu.Unlock()
		return
	}
	b.drain = nil
	b.mu.Unlock()
	if n := b.pool.closeBusy(); n > 0 {
		p.log.Warn("cut requests still running on a drained node", "node", b.name, "requests", n, "why", why)
	}
	b.closeLong()
}

// served records that a request sent to b at sent was answered.
func (b *backend) markServed(sent time.Time) {
	if ns := sent.UnixNano(); ns > b.servedSent.Load() {
		b.servedSent.Store(ns)
	}
}

// served is when the latest request that b answered was sent.
func (b *backend) served() time.Time {
	if ns := b.servedSent.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// suspicion is a failed request to node, sent to it at sent.
type suspicion struct {
	node string
	sent time.Time
}

// suspect reports that a request sent to node at sent failed in a way that
// says the node may no longer serve: it stops being a target until a probe
// sent after its quarantine confirms it. Failures of requests sent before
// the node's latest quarantine ended count as that quarantine's strike.
func (p *Proxy) suspect(b *backend, sent time.Time) {
	select {
	case p.suspectC <- suspicion{node: b.name, sent: sent}:
	default:
	}
}

func (p *Proxy) kickProbe(node string) {
	if b := p.backends[node]; b != nil {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// prober probes one node's /lb-check every probe_interval (every
// bystanderProbeEvery while no decision uses it), and every few
// milliseconds (for at most hold_timeout) after a kick until it answers 200.
func (p *Proxy) prober(ctx context.Context, b *backend) {
	scheme := "http://"
	if p.opts.APITLS != nil {
		scheme = "https://"
	}
	url := scheme + b.api + "/lb-check"
	var fastUntil time.Time
	timer := p.clk.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-timer.C():
		case <-b.kick:
			fastUntil = p.clk.Now().Add(p.cfg.HoldTimeout)
			if !timer.Stop() {
				select {
				case <-timer.C():
				default:
				}
			}
		case <-ctx.Done():
			return
		}
		sent := p.clk.Now()
		ok := p.probe(ctx, url)
		select {
		case p.probeC <- probeResult{node: b.name, ok: ok, at: sent}:
		case <-ctx.Done():
			return
		}
		wait := p.cfg.ProbeInterval
		if ok {
			fastUntil = time.Time{}
		} else if p.clk.Now().Before(fastUntil) {
			wait = fastProbeEvery
		}
		if b.bystander.Load() && wait != fastProbeEvery {
			wait = max(wait, bystanderProbeEvery)
		}
		timer.Reset(wait)
	}
}

func (p *Proxy) probe(ctx context.Context, url string) bool {
	if url == "http:///lb-check" || url == "https:///lb-check" {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := p.probeClient.Do(req)
	if err != nil {
		return false
	}
	var buf [64]byte
	_, _ = resp.Body.Read(buf[:])
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pinger confirms every lease/4 that the store answers, so that the view
// counts as fresh between snapshots.
func (p *Proxy) pinger(ctx context.Context) {
	every := max(p.opts.LeaseTTL/4, 50*time.Millisecond)
	t := p.clk.NewTicker(every)
	defer t.Stop()
	for {
		sent := p.clk.Now()
		cctx, cancel := context.WithTimeout(ctx, every)
		err := p.opts.Ping(cctx)
		cancel()
		if err == nil {
			select {
			case p.freshC <- sent:
			default:
			}
		} else if ctx.Err() == nil {
			p.log.Debug("store ping", "err", err)
		}
		select {
		case <-t.C():
		case <-ctx.Done():
			return
		}
	}
}

// waitTargets returns a non-empty target set newer than after, holding the
// caller until one exists, until deadline, or until ctx ends.
func (p *Proxy) waitTargets(ctx context.Context, deadline time.Time, after uint64) (*targetSet, error) {
	ts := p.targets.Load()
	if ts.usable(p.clk.Now(), after) {
		return ts, nil
	}
	if n := p.held.Add(1); n > int64(p.cfg.HoldQueue) {
		p.held.Add(-1)
		return nil, errQueueFull
	}
	start := p.clk.Now()
	defer func() {
		p.held.Add(-1)
		p.metrics.hold.Observe(p.clk.Since(start).Seconds())
	}()
	// A request that waits only because the set ran out (the router is
	// late to renew it) says so, then looks once more: the router wakes
	// such requests when it renews, and either it sees this one counted or
	// this one sees the renewal.
	counted := false
	defer func() {
		if counted {
			p.expiredWait.Add(-1)
		}
	}()
	// countExpired counts this request once, the first time it waits on a
	// set that ran out; it reports whether it just did.
	countExpired := func(ts *targetSet) bool {
		if counted || len(ts.nodes) == 0 || ts.gen <= after {
			return false
		}
		counted = true
		p.expiredWait.Add(1)
		return true
	}
	if countExpired(ts) {
		if ts = p.targets.Load(); ts.usable(p.clk.Now(), after) {
			return ts, nil
		}
	}
	timer := p.clk.NewTimer(deadline.Sub(p.clk.Now()))
	defer timer.Stop()
	for {
		select {
		case <-ts.changed:
			ts = p.targets.Load()
			if ts.usable(p.clk.Now(), after) {
				return ts, nil
			}
			if countExpired(ts) {
				if ts = p.targets.Load(); ts.usable(p.clk.Now(), after) {
					return ts, nil
				}
			}
		case <-timer.C():
			return nil, errHoldTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

var (
	errQueueFull   = errors.New("hold queue full")
	errHoldTimeout = errors.New("no node took traffic within hold_timeout")
)
