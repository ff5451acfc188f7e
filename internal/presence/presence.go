// Package presence turns successive views of the nodes' published records
// into the facts people look for in the history: a node lost (its session
// expired), found again, its agent restarted, and how long a failover took
// counted from the loss of the old active rather than from the election.
//
// A Tracker is pure: it is fed snapshots and the time they were seen and
// returns events; the agent records them. Every agent runs one, so any of
// them can say when a node was lost; only the Reporter records, so the
// history gets each fact once.
package presence

import (
	"fmt"
	"sort"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// Event kinds and changes (ha.Event.Kind and To).
const (
	KindNode     = "node"     // To: Lost, Found, Restarted
	KindFailover = "failover" // a new active after the old one was lost
	Lost         = "lost"
	Found        = "found"
	Restarted    = "restarted"
)

// Options configure a Tracker.
type Options struct {
	// LeaseTTL is how long a session outlives its agent's last renewal:
	// a node's loss is seen about LeaseTTL after its agent stopped.
	LeaseTTL time.Duration
}

// Tracker remembers what the previous snapshots showed. Not safe for
// concurrent use.
type Tracker struct {
	opts   Options
	primed bool
	seen   map[string]ha.NodeStatus // last record of each node seen alive
	lost   map[string]time.Time     // nodes lost and not found again: when
	leader ha.Leader
	last   *ha.Event // the last failover
}

// New returns a Tracker that has seen nothing yet.
func New(o Options) *Tracker {
	return &Tracker{opts: o, seen: map[string]ha.NodeStatus{}, lost: map[string]time.Time{}}
}

// Observe takes the next snapshot, seen at now, and returns the events it
// shows, oldest first. The first snapshot only sets what is known.
func (t *Tracker) Observe(snap ha.Snapshot, now time.Time) []ha.Event {
	var evs []ha.Event
	if !t.primed {
		t.primed = true
		for name, rec := range snap.Nodes {
			t.seen[name] = rec
		}
		t.leader = snap.Leader
		return nil
	}
	for _, name := range sortedNames(snap.Nodes) {
		rec := snap.Nodes[name]
		prev, known := t.seen[name]
		lostAt, wasLost := t.lost[name]
		switch {
		case wasLost:
			delete(t.lost, name)
			ev := ha.Event{Time: now, Node: name, Kind: KindNode, From: Lost, To: Found, Duration: now.Sub(lostAt)}
			if known && restarted(prev, rec) {
				ev.Reason = fmt.Sprintf("back %s after it was lost; its agent restarted (pid %d -> %d)", round(now.Sub(lostAt)), prev.AgentPID, rec.AgentPID)
			} else {
				ev.Reason = fmt.Sprintf("back %s after it was lost, same agent (pid %d): it was paused or cut off", round(now.Sub(lostAt)), rec.AgentPID)
			}
			evs = append(evs, ev)
		case known && restarted(prev, rec):
			evs = append(evs, ha.Event{Time: now, Node: name, Kind: KindNode, To: Restarted,
				Reason: fmt.Sprintf("its agent restarted (pid %d -> %d) before its old session expired", prev.AgentPID, rec.AgentPID)})
		}
		t.seen[name] = rec
	}
	for _, name := range sortedNames(t.seen) {
		if _, ok := snap.Nodes[name]; ok {
			continue
		}
		if _, already := t.lost[name]; already {
			continue
		}
		prev := t.seen[name]
		if prev.Role == ha.RoleStopped {
			// A graceful stop publishes "stopped" and then ends its session.
			delete(t.seen, name)
			continue
		}
		t.lost[name] = now
		stopped := now.Add(-t.opts.LeaseTTL)
		evs = append(evs, ha.Event{Time: now, Node: name, Kind: KindNode, From: string(prev.Role), To: Lost,
			Reason: fmt.Sprintf("its session expired: its agent (pid %d) stopped renewing at about %s; last record written %s", prev.AgentPID, clock(stopped), clock(prev.Heartbeat))})
	}
	if l := snap.Leader; !l.None() && l != t.leader {
		old := t.leader
		if lostAt, ok := t.lost[old.Node]; ok && old.Node != l.Node && !old.None() {
			fault := lostAt.Add(-t.opts.LeaseTTL)
			ev := ha.Event{Time: now, Node: l.Node, Kind: KindFailover, From: old.Node, To: l.Node, Epoch: l.Epoch, Duration: now.Sub(fault),
				Reason: fmt.Sprintf("%s lost; %s active %s after %s's agent stopped renewing (lease %s, then %s after the session expired)", old.Node, l.Node, round(now.Sub(fault)), old.Node, t.opts.LeaseTTL, round(now.Sub(lostAt)))}
			evs = append(evs, ev)
			t.last = &ev
		}
	}
	if !snap.Leader.None() {
		t.leader = snap.Leader
	}
	return evs
}

// Lost reports since when name has been lost, if it is.
func (t *Tracker) Lost(name string) (time.Time, bool) {
	at, ok := t.lost[name]
	return at, ok
}

// LastFailover is the last failover after a loss, nil if none was seen.
func (t *Tracker) LastFailover() *ha.Event { return t.last }

// Remember takes the newest failover in history (oldest first, as the store
// returns it) as the last failover, unless this tracker saw a newer one
// itself: an agent that starts after a failover still reports it.
func (t *Tracker) Remember(history []ha.Event) {
	for i := len(history) - 1; i >= 0; i-- {
		ev := history[i]
		if ev.Kind != KindFailover {
			continue
		}
		if t.last == nil || ev.Time.After(t.last.Time) {
			t.last = &ev
		}
		return
	}
}

// Reporter reports whether self is the node that records presence events
// about subject in snap: the first by name of the live agents other than
// subject (witnesses do not record), so that the history gets each fact
// once. The subject never reports on itself: a node that comes back with a
// new agent has not seen its own loss, and would record nothing.
func Reporter(snap ha.Snapshot, self, subject string) bool {
	first := ""
	for name, rec := range snap.Nodes {
		if name == subject || rec.Role == ha.RoleWitness || rec.Role == ha.RoleStopped {
			continue
		}
		if first == "" || name < first {
			first = name
		}
	}
	return first == self || first == ""
}

func restarted(prev, rec ha.NodeStatus) bool {
	return !prev.StartedAt.IsZero() && !rec.StartedAt.Equal(prev.StartedAt) || prev.AgentPID != 0 && rec.AgentPID != prev.AgentPID
}

func sortedNames(m map[string]ha.NodeStatus) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func clock(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format("15:04:05.000")
}
