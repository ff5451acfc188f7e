package sessions

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// Limits of one commit: etcd takes at most 128 operations per transaction
// (its default --max-txn-ops) and 1.5 MiB per request by default
// (--max-request-bytes; haven's embedded etcd keeps that default). A
// request over it is refused, and a retry cannot help: so a batch of
// several commands stays under batchBytes, one command alone under
// commandBytes (refused when it arrives, exec), and what is left of the
// 1.5 MiB covers the fence, the keys' prefix and encoding (128 keys at
// most) and the gRPC framing.
const (
	batchOps   = 128
	batchBytes = 1 << 20
	// commandBytes: the most one write command may cost (cmdCost).
	commandBytes = 1<<20 + 256<<10
	// MaxKeyBytes: the longest key a write may name (Redis allows 512 MB).
	MaxKeyBytes = 64 << 10
	// inFlight commits at once at most. A second commit starts only when
	// a full batch is queued (see fullBatch): every commit costs the store
	// a raft round and an apply on each member whatever its size, so
	// while one is in flight the writes that arrive wait and go together
	// in the next (classic group commit). Measured on the 2-core machine:
	// four commits of whatever was queued carried ~9 keys each and
	// throughput fell with more of them in flight.
	inFlight = 4
)

// Timings of the replication loop.
const (
	rolePoll = 20 * time.Millisecond // how often a role change is noticed without RoleChanged
	// roleBackstop: how often the role is looked at with RoleChanged too,
	// should a change not be signalled (the fence deadline passing while
	// the agent's loop is late).
	roleBackstop = 200 * time.Millisecond
	sweepEvery   = 250 * time.Millisecond // the active's pass over expired keys
	sweepLimit   = 1000                   // keys deleted per pass at most
	sweepScan    = 20000                  // keys looked at per pass at most
	tryTimeout   = 700 * time.Millisecond // one commit attempt
	retryFor     = 2500 * time.Millisecond
	loadBackoff  = 100 * time.Millisecond
	// maxLoadBackoff: the longest wait between loads while the store fails.
	maxLoadBackoff = time.Second
	retryBackoff   = 20 * time.Millisecond
)

var errWatchEnded = errors.New("the watch of the session store ended")

// Run keeps this node's copy: loaded and written as the active, watched as
// a standby, until ctx ends. Without a Backend it only waits for ctx.
func (s *Server) Run(ctx context.Context) error {
	if s.opts.Backend == nil {
		<-ctx.Done()
		return nil
	}
	backoff := loadBackoff
	for ctx.Err() == nil {
		var err error
		if s.opts.ActiveActive {
			err = s.runAA(ctx)
		} else if epoch, ok := s.opts.Role(); ok {
			err = s.runActive(ctx, epoch)
		} else {
			err = s.runStandby(ctx)
		}
		if err == nil || ctx.Err() != nil {
			backoff = loadBackoff
			continue
		}
		// While the store is down, try again less often, and say so once.
		if backoff == loadBackoff {
			s.opts.Log.Warn("sessions: reloading the copy", "err", err)
		} else {
			s.opts.Log.Debug("sessions: reloading the copy", "err", err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, maxLoadBackoff)
	}
	s.db.stopWriting()
	return nil
}

// stillActive reports whether this node still serves at epoch.
func (s *Server) stillActive(epoch ha.Epoch) bool {
	e, ok := s.opts.Role()
	return ok && e == epoch
}

// runActive loads the data (a linearizable read made after the promotion,
// so it holds every write of earlier epochs) and commits this node's
// changes until the role or a commit fails.
func (s *Server) runActive(ctx context.Context, epoch ha.Epoch) error {
	changed, poll := s.roleWatch()
	defer poll.Stop()
	var recs []ha.SessionRecord
	var err error
	if al, ok := s.opts.Backend.(ha.SessionActiveLoader); ok {
		// The backend may change its layout first (etcd's packed layout):
		// fenced by epoch, before this node accepts writes.
		recs, _, err = al.LoadSessionsAsActive(ctx, s.opts.Node, epoch)
	} else {
		recs, _, err = s.opts.Backend.LoadSessions(ctx)
	}
	if err != nil {
		return err
	}
	if !s.stillActive(epoch) {
		return nil
	}
	s.db.reset(recs, true, epoch)
	s.opts.Log.Info("sessions: serving writes", "epoch", epoch, "keys", len(recs))
	var wg sync.WaitGroup
	// Before this returns (and the copy is reloaded), no commit may still
	// be running: one finishing after the reload's read would be missing.
	defer wg.Wait()
	defer s.db.stopWriting()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	slots := make(chan struct{}, inFlight)
	failed := make(chan error, 1)
	held := time.NewTimer(time.Hour) // the group commit's wait (db.hold)
	held.Stop()
	defer held.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-changed:
			changed = s.opts.RoleChanged()
			if !s.stillActive(epoch) {
				s.opts.Log.Info("sessions: no longer active; read-only", "epoch", epoch)
				return nil
			}
		case <-poll.C:
			if !s.stillActive(epoch) {
				s.opts.Log.Info("sessions: no longer active; read-only", "epoch", epoch)
				return nil
			}
		case <-sweep.C:
			if s.opts.Relayout != nil && s.opts.Relayout() {
				s.opts.Log.Info("sessions: reloading to change the store's layout", "epoch", epoch)
				return nil
			}
			if n := s.db.expire(sweepLimit); n > 0 {
				s.metrics.expired.Add(float64(n))
			}
		case <-held.C:
			s.db.wake()
		case <-s.db.kick:
			for len(slots) < cap(slots) {
				if len(slots) > 0 && !s.db.fullBatch(batchOps, batchBytes) {
					break // the next batch waits for the one in flight and grows
				}
				if len(slots) == 0 {
					if w := s.db.hold(); w > 0 {
						held.Reset(w) // the last commit's writers may come back
						break
					}
				}
				b := s.db.take(batchOps, batchBytes)
				if b == nil {
					break
				}
				slots <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					if err := s.commit(ctx, epoch, b.recs); err != nil {
						select {
						case failed <- err:
						default:
						}
					} else {
						s.db.done(b, time.Since(start)) // wakes this loop for what waited on b's keys
					}
					<-slots
					s.db.wake()
				}()
			}
		}
	}
}

// commit writes one batch, trying again for a while when the store fails
// for reasons other than the fence: the batch holds whole values and
// absolute expiries and only this node writes at epoch, so writing it twice
// is the same as once.
func (s *Server) commit(ctx context.Context, epoch ha.Epoch, batch []ha.SessionRecord) error {
	start := time.Now()
	backoff := retryBackoff
	for {
		tctx, cancel := context.WithTimeout(ctx, tryTimeout)
		_, err := s.opts.Backend.CommitSessions(tctx, s.opts.Node, epoch, batch)
		cancel()
		if err == nil {
			s.metrics.commits.Observe(time.Since(start).Seconds())
			s.metrics.batch.Observe(float64(len(batch)))
			return nil
		}
		if errors.Is(err, ha.ErrNotLeader) || ctx.Err() != nil || time.Since(start)+backoff > retryFor || !s.stillActive(epoch) {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// roleWatch is what wakes a replication loop to look at the role again:
// the RoleChanged channel, taken before the caller looks at the role (nil
// without RoleChanged), and a ticker (every rolePoll without RoleChanged,
// else every roleBackstop). The caller stops the ticker.
func (s *Server) roleWatch() (<-chan struct{}, *time.Ticker) {
	if s.opts.RoleChanged == nil {
		return nil, time.NewTicker(rolePoll)
	}
	return s.opts.RoleChanged(), time.NewTicker(roleBackstop)
}

// runStandby loads the copy and follows the watch until this node becomes
// active or the watch fails.
func (s *Server) runStandby(ctx context.Context) error {
	changed, poll := s.roleWatch()
	defer poll.Stop()
	if _, ok := s.opts.Role(); ok {
		return nil // promoted since Run looked
	}
	recs, rev, err := s.opts.Backend.LoadSessions(ctx)
	if err != nil {
		return err
	}
	s.db.reset(recs, false, 0)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	werr := make(chan error, 1)
	go func() { werr <- s.opts.Backend.WatchSessions(wctx, rev, s.db.apply) }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-werr:
			if err == nil {
				err = errWatchEnded
			}
			return err
		case <-changed:
			changed = s.opts.RoleChanged()
			if _, ok := s.opts.Role(); ok {
				return nil
			}
		case <-poll.C:
			if _, ok := s.opts.Role(); ok {
				return nil
			}
		}
	}
}
