// Package memstore is an in-memory ha.Store for tests and the simulation:
// one Server holds the cluster's state and expires leases by its injected
// clock, each Client is one agent's connection to it, and faults
// (partitioned, slow, response lost after commit, watch stalled) are set
// per client. It passes the same storetest suite as etcd, PostgreSQL and
// MariaDB.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// Server is the store: the state every client shares.
type Server struct {
	clk clock.Clock

	mu         sync.Mutex
	rev        int64
	epoch      ha.Epoch // the last epoch granted
	leader     ha.Leader
	leaderSess uint64
	tenure     ha.Tenure // the tenure record (package lockdelay; tenure.go)
	nextSess   uint64
	sessions   map[uint64]time.Time // session -> expiry on the server's clock
	nodes      map[string]record
	maint      map[string]bool
	sw         *ha.Switchover
	events     []ha.Event
	data       map[string]item
	ids        map[string]int64 // idempotency id -> revision of its write
	props      map[string]ha.NodeProps
	watchers   map[*watcher]struct{}
	timer      clock.Timer
	timerAt    time.Time
	// tick: expired sessions are dropped only on a tick of this period
	// (etcd's lessor revokes on a 500 ms tick), or by Revoke; 0: at once.
	tick time.Duration
	// next: no session is dropped and no switchover lapses before it
	// (zero: none pending), when nextKnown; a lower bound, so that a call
	// need not look at every session (renewals only move expiries later).
	next      time.Time
	nextKnown bool
}

type record struct {
	st   ha.NodeStatus
	sess uint64
}

type item struct {
	value string
	rev   int64
}

// New returns an empty store whose leases expire by clk.
func New(clk clock.Clock) *Server {
	return &Server{
		clk:      clk,
		sessions: map[uint64]time.Time{},
		nodes:    map[string]record{},
		maint:    map[string]bool{},
		data:     map[string]item{},
		ids:      map[string]int64{},
		props:    map[string]ha.NodeProps{},
		watchers: map[*watcher]struct{}{},
	}
}

// Fault is what goes wrong between one client and the store.
type Fault struct {
	// Partitioned: requests do not reach the store; calls hang until their
	// context ends and change nothing.
	Partitioned bool
	// LoseResponses: requests reach the store and commit, but the answer
	// is lost; calls hang until their context ends.
	LoseResponses bool
	// Delay: each request takes this long (on the store's clock) to
	// arrive, as on a slow or loaded store.
	Delay time.Duration
	// WatchStalled: the client's watches deliver nothing until it clears.
	WatchStalled bool
	// WatchRestarting: the client's watches failed and cannot read the
	// store again (an etcd member cut off from its quorum): each sends
	// its last snapshot marked Behind, then nothing until it clears, then
	// the latest snapshot.
	WatchRestarting bool
}

// Client is one agent's connection to the Server; it implements ha.Store
// and ha.Properties. Its session is its own.
type Client struct {
	s *Server

	mu    sync.Mutex
	sess  uint64
	ttl   time.Duration
	fault Fault
	won   wonTenure // the record this client's latest win replaced (tenure.go)
}

// Client returns a new connection to s.
func (s *Server) Client() *Client { return &Client{s: s} }

var (
	_ ha.Store      = (*Client)(nil)
	_ ha.Properties = (*Client)(nil)
)

// SetFault replaces the client's faults; a cleared WatchStalled or
// WatchRestarting delivers the latest snapshot at once.
func (c *Client) SetFault(f Fault) {
	c.mu.Lock()
	c.fault = f
	c.mu.Unlock()
	c.s.mu.Lock()
	c.s.notifyLocked()
	c.s.mu.Unlock()
}

// Fault returns the client's faults.
func (c *Client) Fault() Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fault
}

// ErrUnreachable is returned when a call's context ends before its answer
// arrives (partitioned, or the answer was lost).
var ErrUnreachable = errors.New("memstore: no answer from the store")

// call runs op on the server under the client's faults.
func (c *Client) call(ctx context.Context, op func(s *Server, sess uint64) error) error {
	f := c.Fault()
	if f.Delay > 0 && !clock.SleepCtx(ctx, c.s.clk, f.Delay) {
		return fmt.Errorf("%w: %w", ErrUnreachable, context.Cause(ctx))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, context.Cause(ctx))
	}
	if f.Partitioned || c.Fault().Partitioned {
		<-ctx.Done()
		return fmt.Errorf("%w: %w", ErrUnreachable, context.Cause(ctx))
	}
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	c.s.mu.Lock()
	c.s.expireLocked()
	err := op(c.s, sess)
	c.s.armLocked()
	c.s.mu.Unlock()
	if c.Fault().LoseResponses {
		<-ctx.Done()
		return fmt.Errorf("%w (after it committed): %w", ErrUnreachable, context.Cause(ctx))
	}
	return err
}

// NewSession creates a session with ttl, replacing the client's earlier one.
func (c *Client) NewSession(ctx context.Context, ttl time.Duration) (time.Duration, error) {
	var id uint64
	err := c.call(ctx, func(s *Server, old uint64) error {
		s.dropSessionLocked(old)
		s.nextSess++
		id = s.nextSess
		s.sessions[id] = s.clk.Now().Add(ttl)
		s.lowerNextLocked(s.dropAt(s.sessions[id]))
		return nil
	})
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.sess, c.ttl = id, ttl
	c.mu.Unlock()
	return ttl, nil
}

// Renew extends the session by its TTL from now on the store's clock.
func (c *Client) Renew(ctx context.Context) (time.Duration, error) {
	c.mu.Lock()
	ttl := c.ttl
	c.mu.Unlock()
	err := c.call(ctx, func(s *Server, sess uint64) error {
		if !s.liveLocked(sess) {
			return ha.ErrSessionLost // an expired lease cannot be renewed, revoked or not
		}
		s.sessions[sess] = s.clk.Now().Add(ttl)
		return nil
	})
	return ttl, err
}

// Campaign takes the active role for node under the client's session.
func (c *Client) Campaign(ctx context.Context, node string) (ha.Epoch, error) {
	var e ha.Epoch
	var won *wonTenure
	err := c.call(ctx, func(s *Server, sess uint64) error {
		if !s.liveLocked(sess) {
			return ha.ErrSessionLost
		}
		if !s.leader.None() {
			if s.leaderSess == sess && s.leader.Node == node {
				e = s.leader.Epoch
				return nil
			}
			return ha.ErrTaken
		}
		s.epoch++
		s.leader, s.leaderSess, e = ha.Leader{Node: node, Epoch: s.epoch}, sess, s.epoch
		won = &wonTenure{epoch: e, prev: s.tenure}
		s.tenure = ha.Tenure{Epoch: e, Node: node, Unsettled: true}
		s.changedLocked()
		return nil
	})
	if won != nil {
		c.mu.Lock()
		c.won = *won
		c.mu.Unlock()
	}
	return e, err
}

// Resign gives up the role if node holds it at epoch.
func (c *Client) Resign(ctx context.Context, node string, epoch ha.Epoch) error {
	return c.call(ctx, func(s *Server, _ uint64) error {
		if s.leader != (ha.Leader{Node: node, Epoch: epoch}) {
			return ha.ErrNotLeader
		}
		s.leader, s.leaderSess = ha.Leader{}, 0
		s.tenure = ha.Tenure{Epoch: epoch, Node: node, Ended: ha.TenureResigned}
		s.changedLocked()
		return nil
	})
}

// Publish writes st, bound to the client's session.
func (c *Client) Publish(ctx context.Context, st ha.NodeStatus) error {
	return c.call(ctx, func(s *Server, sess uint64) error {
		if !s.liveLocked(sess) {
			return ha.ErrSessionLost
		}
		s.nodes[st.Name] = record{st: st, sess: sess}
		s.changedLocked()
		return nil
	})
}

// Close releases the session (the store's side of a clean shutdown). It
// reaches the store unless the client is partitioned.
func (c *Client) Close() error {
	if c.Fault().Partitioned {
		return nil
	}
	c.mu.Lock()
	sess := c.sess
	c.sess = 0
	c.mu.Unlock()
	c.s.mu.Lock()
	c.s.dropSessionLocked(sess)
	c.s.armLocked()
	c.s.mu.Unlock()
	return nil
}

// SetMaintenance turns maintenance on or off for node.
func (c *Client) SetMaintenance(ctx context.Context, node string, on bool) error {
	return c.call(ctx, func(s *Server, _ uint64) error {
		if s.maint[node] == on {
			return nil
		}
		if on {
			s.maint[node] = true
		} else {
			delete(s.maint, node)
		}
		s.changedLocked()
		return nil
	})
}

// RequestSwitchover records sw unless another unexpired one is pending
// (ErrBusy) or the role is no longer held by sw.From at sw.Epoch (ErrStale).
func (c *Client) RequestSwitchover(ctx context.Context, sw ha.Switchover) error {
	return c.call(ctx, func(s *Server, _ uint64) error {
		if s.sw != nil {
			return ha.ErrBusy
		}
		if s.leader != (ha.Leader{Node: sw.From, Epoch: sw.Epoch}) {
			return fmt.Errorf("%w: the switchover is from %s at epoch %d, the store has %s at epoch %d", ha.ErrStale, sw.From, sw.Epoch, s.leader.Node, s.leader.Epoch)
		}
		cp := sw
		s.sw = &cp
		s.lowerNextLocked(cp.Deadline)
		s.changedLocked()
		return nil
	})
}

// ClearSwitchover removes the pending switchover if its ID is id.
func (c *Client) ClearSwitchover(ctx context.Context, id string) error {
	return c.call(ctx, func(s *Server, _ uint64) error {
		if s.sw != nil && s.sw.ID == id {
			s.sw = nil
			s.changedLocked()
		}
		return nil
	})
}

// AppendEvent adds ev to the history, pruned to ha.MaxEvents.
func (c *Client) AppendEvent(ctx context.Context, ev ha.Event) error {
	return c.call(ctx, func(s *Server, _ uint64) error {
		// Kept in time order, as the SQL stores and etcd keys keep them.
		i := sort.Search(len(s.events), func(i int) bool { return s.events[i].Time.After(ev.Time) })
		s.events = append(s.events, ha.Event{})
		copy(s.events[i+1:], s.events[i:])
		s.events[i] = ev
		if len(s.events) > ha.MaxEvents+50 {
			s.events = append([]ha.Event(nil), s.events[len(s.events)-ha.MaxEvents:]...)
		}
		return nil
	})
}

// Events returns the newest limit events, oldest first.
func (c *Client) Events(ctx context.Context, limit int) ([]ha.Event, error) {
	var out []ha.Event
	err := c.call(ctx, func(s *Server, _ uint64) error {
		evs := s.events
		if limit >= 0 && len(evs) > limit {
			evs = evs[len(evs)-limit:]
		}
		out = append([]ha.Event(nil), evs...)
		return nil
	})
	return out, err
}

// FencedPut writes key if node holds the role at epoch.
func (c *Client) FencedPut(ctx context.Context, node string, epoch ha.Epoch, key, value, id string) (int64, bool, error) {
	var rev int64
	var repeat bool
	err := c.call(ctx, func(s *Server, _ uint64) error {
		if id != "" {
			if r, ok := s.ids[id]; ok {
				rev, repeat = r, true
				return nil
			}
		}
		if s.leader != (ha.Leader{Node: node, Epoch: epoch}) {
			return ha.ErrNotLeader
		}
		s.rev++
		rev = s.rev
		s.data[key] = item{value: value, rev: rev}
		if id != "" {
			s.ids[id] = rev
		}
		return nil
	})
	return rev, repeat, err
}

// FencedGet reads key if node holds the role at epoch.
func (c *Client) FencedGet(ctx context.Context, node string, epoch ha.Epoch, key string) (string, bool, int64, error) {
	var it item
	var found bool
	var rev int64
	err := c.call(ctx, func(s *Server, _ uint64) error {
		if s.leader != (ha.Leader{Node: node, Epoch: epoch}) {
			return ha.ErrNotLeader
		}
		it, found = s.data[key]
		rev = s.rev
		return nil
	})
	return it.value, found, rev, err
}

// SetProps replaces node's properties; zero props remove them.
func (c *Client) SetProps(ctx context.Context, node string, p ha.NodeProps) error {
	return c.call(ctx, func(s *Server, _ uint64) error {
		props := maps.Clone(s.props) // snapshots share the map: replace it
		if p.Zero() {
			delete(props, node)
		} else {
			props[node] = p
		}
		s.props = props
		s.changedLocked()
		return nil
	})
}

// Snapshot returns the store's current view, after expiring what is due
// (the simulation reads it directly).
func (s *Server) Snapshot() ha.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	s.armLocked()
	return s.snapshotLocked()
}

// Session reports whether the client's session is live in the store (not
// expired, whether or not it was dropped yet), and when it expires there.
func (c *Client) Session() (time.Time, bool) {
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.expireLocked()
	c.s.armLocked()
	exp, ok := c.s.sessions[sess]
	return exp, ok && c.s.liveLocked(sess)
}

func (s *Server) snapshotLocked() ha.Snapshot {
	snap := ha.Snapshot{Rev: s.rev, Leader: s.leader, Nodes: make(map[string]ha.NodeStatus, len(s.nodes)), Props: s.props, Tenure: s.tenure}
	for name, r := range s.nodes {
		snap.Nodes[name] = r.st
	}
	if len(s.maint) > 0 {
		snap.Intents.Maintenance = maps.Clone(s.maint)
	}
	if s.sw != nil {
		sw := *s.sw
		snap.Intents.Switchover = &sw
	}
	return snap
}

// changedLocked bumps the revision and wakes the watchers.
func (s *Server) changedLocked() {
	s.rev++
	s.notifyLocked()
}

func (s *Server) notifyLocked() {
	for w := range s.watchers {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// dropSessionLocked deletes a session and what is bound to it.
func (s *Server) dropSessionLocked(id uint64) {
	if id == 0 {
		return
	}
	if _, ok := s.sessions[id]; !ok {
		return
	}
	delete(s.sessions, id)
	if s.leaderSess == id {
		s.leader, s.leaderSess = ha.Leader{}, 0
	}
	for name, r := range s.nodes {
		if r.sess == id {
			delete(s.nodes, name)
		}
	}
	s.changedLocked()
}

// liveLocked reports whether session sess exists and has not expired.
func (s *Server) liveLocked(sess uint64) bool {
	exp, ok := s.sessions[sess]
	return ok && s.clk.Now().Before(exp)
}

// dropAt is when an expired session is dropped: at its expiry, or with a
// tick on the first tick at or after it.
func (s *Server) dropAt(exp time.Time) time.Time {
	if s.tick <= 0 {
		return exp
	}
	if r := time.Duration(exp.UnixNano() % int64(s.tick)); r > 0 { // ticks on the Unix epoch's grid
		return exp.Add(s.tick - r)
	}
	return exp
}

// SetExpiryTick makes the store drop expired sessions only on ticks of d,
// as etcd's lessor does (500 ms), until Revoke drops one sooner; 0: at
// the moment they expire. An expired session is no longer renewed nor
// used by any call either way.
func (s *Server) SetExpiryTick(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick = d
	s.nextKnown = false
}

// ErrNotExpired: a revocation before the lease's expiry (etcd's revoker
// proposes one only once the primary lessor says the lease has expired).
var ErrNotExpired = errors.New("memstore: the lease has not expired yet")

// LeaderLease returns the session that holds the leader key and when it
// expires, as the primary lessor has it; ok false when no one holds it.
func (s *Server) LeaderLease() (sess uint64, expiry time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	s.armLocked()
	if s.leader.None() {
		return 0, time.Time{}, false
	}
	return s.leaderSess, s.sessions[s.leaderSess], true
}

// Revoke drops session sess and what is bound to it (the leader key, its
// records), as haven's revoke-at-expiry does (etcdstore.RevokeAtExpiry):
// if sess holds the leader key, it first records the tenure as expired
// (tenure.go). ErrNotExpired before the session's expiry. A session
// already gone is no error.
func (s *Server) Revoke(sess uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.sessions[sess]
	if !ok {
		return nil
	}
	if s.clk.Now().Before(exp) {
		return fmt.Errorf("%w: revoke of session %d %s before its expiry", ErrNotExpired, sess, exp.Sub(s.clk.Now()))
	}
	if s.leaderSess == sess && !s.leader.None() {
		rec := ha.Tenure{Epoch: s.leader.Epoch, Node: s.leader.Node, Ended: ha.TenureExpired, Unsettled: true}
		if s.tenure.Epoch == rec.Epoch {
			rec.Unsettled = s.tenure.Unsettled // an unsettled tenure stays so
		}
		s.tenure = rec
	}
	s.dropSessionLocked(sess)
	s.armLocked()
	return nil
}

// lowerNextLocked notes that something may be dropped or lapse at t.
func (s *Server) lowerNextLocked(t time.Time) {
	if s.nextKnown && (s.next.IsZero() || t.Before(s.next)) {
		s.next = t
	}
}

// expireLocked drops the sessions and the switchover whose time is up.
func (s *Server) expireLocked() {
	now := s.clk.Now()
	if s.nextKnown && (s.next.IsZero() || now.Before(s.next)) {
		return // nothing is due yet
	}
	var due []uint64
	for id, exp := range s.sessions {
		if !now.Before(s.dropAt(exp)) {
			due = append(due, id)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i] < due[j] })
	for _, id := range due {
		s.dropSessionLocked(id)
	}
	if s.sw != nil && !now.Before(s.sw.Deadline) {
		s.sw = nil
		s.changedLocked()
	}
	s.next, s.nextKnown = s.nextDropLocked(), true
}

// nextDropLocked is when the next session is dropped or the switchover
// lapses; zero if nothing is pending.
func (s *Server) nextDropLocked() time.Time {
	var next time.Time
	for _, exp := range s.sessions {
		if at := s.dropAt(exp); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if s.sw != nil && (next.IsZero() || s.sw.Deadline.Before(next)) {
		next = s.sw.Deadline
	}
	return next
}

// armLocked sets the timer that expires the next session or switchover, so
// that watchers learn of an expiry when nobody calls.
func (s *Server) armLocked() {
	if !s.nextKnown {
		s.next, s.nextKnown = s.nextDropLocked(), true
	}
	next := s.next
	if next.IsZero() {
		return // a pending timer finds nothing to do
	}
	if s.timer != nil && !s.timerAt.After(next) {
		return // it fires no later than needed, and re-arms then
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timerAt = next
	d := next.Sub(s.clk.Now())
	if d <= 0 {
		d = time.Nanosecond // expired just now: the next call or tick handles it
	}
	s.timer = s.clk.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.timer = nil
		s.expireLocked()
		s.armLocked()
	})
}

type watcher struct {
	wake chan struct{}
}

// Watch sends the current snapshot, then the latest after every change,
// until ctx ends; while the client's watch is stalled it sends nothing.
func (c *Client) Watch(ctx context.Context) <-chan ha.Snapshot {
	out := make(chan ha.Snapshot, 1)
	w := &watcher{wake: make(chan struct{}, 1)}
	w.wake <- struct{}{}
	s := c.s
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
		}()
		var sent int64 = -1
		var last ha.Snapshot
		for {
			select {
			case <-w.wake:
			case <-ctx.Done():
				return
			}
			f := c.Fault()
			if f.WatchRestarting && sent >= 0 && !last.Behind {
				last.Behind = true
				if !ha.SendLatest(ctx, out, last) {
					return
				}
			}
			if f.WatchStalled || f.Partitioned || f.WatchRestarting {
				continue // SetFault wakes us when it clears
			}
			s.mu.Lock()
			snap := s.snapshotLocked()
			s.mu.Unlock()
			if snap.Rev == sent && !last.Behind {
				continue
			}
			if !ha.SendLatest(ctx, out, snap) {
				return
			}
			sent, last = snap.Rev, snap
		}
	}()
	return out
}

// Rev returns the store's revision (the simulation polls it cheaply).
func (s *Server) Rev() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// SwitchoverID returns the ID of the pending switchover intent ("" when none).
func (s *Server) SwitchoverID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sw == nil {
		return ""
	}
	return s.sw.ID
}

// Leader returns the holder of the active role as the store has it now.
func (s *Server) Leader() ha.Leader {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader
}
