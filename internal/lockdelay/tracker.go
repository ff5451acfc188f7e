package lockdelay

import (
	"sync/atomic"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// Tracker keeps what one election needs for the guard: the latest vacancy
// of its key that its watch showed, and the decision taken when it last
// won. The agent's election and the VIP's (package proxyvip) each have one.
// NoteVacancy is called by the watch; Decide and Pending by whoever
// campaigns and resigns.
type Tracker struct {
	clk     clock.Clock
	start   time.Time // counted from when no vacancy was ever seen
	vacancy atomic.Pointer[Vacancy]
	pending atomic.Pointer[Pending]
}

// Pending is the lock-delay decided when this node won Epoch.
type Pending struct {
	Epoch    ha.Epoch
	Decision Decision
	// Previous is the tenure record the decision went on.
	Previous ha.Tenure
}

// NewTracker starts a tracker at clk's now.
func NewTracker(clk clock.Clock) *Tracker {
	return &Tracker{clk: clk, start: clk.Now()}
}

// NoteVacancy records s's vacancy, if the key is vacant in it; wasVacant
// says whether the previous snapshot's was too (same vacancy), held the
// epoch of the key last seen held. It reports whether the key is vacant
// in s.
func (t *Tracker) NoteVacancy(s ha.Snapshot, wasVacant bool, held ha.Epoch) bool {
	if !s.Leader.None() {
		return false
	}
	v := Vacancy{Tenure: s.Tenure, Since: t.clk.Now(), Epoch: held}
	// The same vacancy only if no campaign came between: snapshots are
	// coalesced (ha.SendLatest, a watch that reconnects), so "vacant, then
	// vacant" may hide a key won and lost meanwhile; every campaign writes
	// the tenure record, so a record of another epoch is a new vacancy,
	// counted from now.
	if p := t.vacancy.Load(); wasVacant && p != nil && p.Tenure.Epoch == s.Tenure.Epoch && p.Epoch == held {
		v.Since = p.Since
	}
	t.vacancy.Store(&v)
	return true
}

// Vacancy is the latest vacancy noted (false: none).
func (t *Tracker) Vacancy() (Vacancy, bool) {
	if p := t.vacancy.Load(); p != nil {
		return *p, true
	}
	return Vacancy{}, false
}

// Decide decides, right after the campaign of node on store won epoch, how
// long acting must wait (Decide on the vacancy the watch showed, or on the
// record the winning transaction replaced when store is an
// ha.PreviousTenurer), and keeps the decision for Pending.
func (t *Tracker) Decide(o Options, node string, store any, epoch ha.Epoch) Pending {
	v, ok := t.Vacancy()
	if !ok {
		v.Since = t.start // never saw the key vacant: count from the start
	}
	if st, ok := store.(ha.PreviousTenurer); ok {
		// The record the winning transaction replaced. Another one than
		// the vacancy's: a key was won and lost between the vacancy this
		// node saw and its win (the watch coalesced it), so that vacancy
		// says nothing; its key went before the win's answer came, so
		// count from now.
		if prev, ok := st.PreviousTenure(epoch); ok {
			if prev.Epoch != v.Tenure.Epoch {
				v.Since = t.clk.Now()
			}
			v.Tenure = prev
		}
	}
	p := Pending{Epoch: epoch, Decision: Decide(o, node, v, t.clk.Now()), Previous: v.Tenure}
	t.pending.Store(&p)
	return p
}

// Pending is the decision of the latest win, if it was at epoch.
func (t *Tracker) Pending(epoch ha.Epoch) (Pending, bool) {
	if p := t.pending.Load(); p != nil && p.Epoch == epoch {
		return *p, true
	}
	return Pending{}, false
}

// ResignWait is how long a resign of epoch must wait at now: a resign
// records a clean end, on which the next winner acts at once, so it must
// not come while the holder before epoch may still act (0: resign now).
func (t *Tracker) ResignWait(epoch ha.Epoch, now time.Time) time.Duration {
	p, ok := t.Pending(epoch)
	if !ok {
		return 0
	}
	return max(p.Decision.Until.Sub(now), 0)
}
