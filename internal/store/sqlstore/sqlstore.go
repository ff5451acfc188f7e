// Package sqlstore holds what the SQL backends (postgres, mysql) share and
// what needs no database: which table prefixes are safe, when a watcher
// must hear of a new snapshot and when it reads again, how long a
// switchover intent lives, and how stored rows become ha values. The
// backends keep their SQL, which differs by dialect, to themselves, and so
// the code that runs it: postgres speaks pgx, mysql database/sql.
package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// DefaultPrefix is the table prefix when the options leave it empty.
const DefaultPrefix = "haven_"

var validPrefix = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,29}$`)

// TablePrefix returns the table prefix to use for the one configured, p:
// DefaultPrefix when p is empty, else p if it is safe to paste into SQL
// (lowercase letters, digits and _).
func TablePrefix(p string) (string, error) {
	if p == "" {
		return DefaultPrefix, nil
	}
	if !validPrefix.MatchString(p) {
		return "", fmt.Errorf("table prefix %q: use lowercase letters, digits and _", p)
	}
	return p, nil
}

// PruneEvery: the history is pruned to ha.MaxEvents on one append in this
// many (by the event's row id, so that a long run of appends always prunes).
const PruneEvery = 50

// Changed reports whether b shows something a watcher of a must hear
// about. Intents count even when the change counter did not move: a
// switchover vanishes from snapshots when it expires, by the clock alone.
func Changed(a, b ha.Snapshot) bool {
	if a.Rev != b.Rev || a.Leader != b.Leader || len(a.Nodes) != len(b.Nodes) {
		return true
	}
	for k := range b.Nodes {
		if _, ok := a.Nodes[k]; !ok {
			return true
		}
	}
	if len(a.Intents.Maintenance) != len(b.Intents.Maintenance) {
		return true
	}
	for k := range b.Intents.Maintenance {
		if !a.Intents.Maintenance[k] {
			return true
		}
	}
	if !maps.Equal(a.Props, b.Props) {
		return true
	}
	sa, sb := a.Intents.Switchover, b.Intents.Switchover
	if (sa == nil) != (sb == nil) {
		return true
	}
	return sa != nil && sa.ID != sb.ID
}

// Watcher remembers the snapshot a Watch loop sent last, so that it sends
// another only when it shows something new.
type Watcher struct {
	last ha.Snapshot
	sent bool
}

// Send sends snap on out (ha.SendLatest) if it is the first snapshot or
// Changed from the last one sent. It returns false if ctx ended first.
func (w *Watcher) Send(ctx context.Context, out chan ha.Snapshot, snap ha.Snapshot) bool {
	if w.sent && !Changed(w.last, snap) {
		return true
	}
	if !ha.SendLatest(ctx, out, snap) {
		return false
	}
	w.last, w.sent = snap, true
	return true
}

// NextRead is how long a Watch loop waits before it reads again after a
// successful read: the poll interval, or just past wake if that is sooner
// (wake: how long until the snapshot read changes by the clock alone, as a
// session or the switchover expires; 0 if never).
func NextRead(poll, wake time.Duration) time.Duration {
	if wake > 0 && wake+5*time.Millisecond < poll {
		return wake + 5*time.Millisecond
	}
	return poll
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// SwitchoverLife is how long the row of sw, requested at now (the agent's
// wall clock, which set sw.Deadline), stays in the store: until the
// deadline, at least a millisecond. The database adds it to its own clock,
// as etcd does with the lease it attaches to the intent.
func SwitchoverLife(sw ha.Switchover, now time.Time) time.Duration {
	return max(sw.Deadline.Sub(now), time.Millisecond)
}

// Maintain adds node to the maintenance intents of snap.
func Maintain(snap *ha.Snapshot, node string) {
	if snap.Intents.Maintenance == nil {
		snap.Intents.Maintenance = map[string]bool{}
	}
	snap.Intents.Maintenance[node] = true
}

// SetNode decodes a node's status row (JSON) into snap.Nodes; a row that
// does not decode is left out.
func SetNode(snap *ha.Snapshot, node string, body []byte) {
	var st ha.NodeStatus
	if json.Unmarshal(body, &st) == nil {
		snap.Nodes[node] = st
	}
}

// SetProps decodes a node's properties row (JSON) into snap; a row that
// does not decode, or says nothing, is left out, as etcdstore does. Each
// read builds a fresh snapshot, so the map is never shared with one sent.
func SetProps(snap *ha.Snapshot, node string, body []byte) {
	var p ha.NodeProps
	if json.Unmarshal(body, &p) != nil || p.Zero() {
		return
	}
	if snap.Props == nil {
		snap.Props = map[string]ha.NodeProps{}
	}
	snap.Props[node] = p
}

// SetSwitchover decodes a switchover row (JSON) into snap; a row that does
// not decode is left out, as etcdstore does.
func SetSwitchover(snap *ha.Snapshot, body []byte) {
	var sw ha.Switchover
	if json.Unmarshal(body, &sw) == nil {
		snap.Intents.Switchover = &sw
	}
}

// Events decodes event rows read newest first into a history oldest
// first, leaving out rows that do not decode.
func Events(newestFirst [][]byte) []ha.Event {
	out := make([]ha.Event, 0, len(newestFirst))
	for i := len(newestFirst) - 1; i >= 0; i-- {
		var ev ha.Event
		if json.Unmarshal(newestFirst[i], &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}
