package config

import (
	"fmt"
	"strings"
	"time"
)

// Constants of etcd behaviour that the timing rules and failover estimates
// depend on.
const (
	// leaseRevokeTick is how often etcd's lessor looks for expired leases,
	// so a lease is revoked up to this long after its TTL runs out. The
	// embedded etcd does not wait for it: the member that leads raft
	// revokes the leader key's lease at its expiry (etcdstore.RevokeAtExpiry);
	// an external etcd does (its API tells no expiry finer than a second).
	leaseRevokeTick = 500 * time.Millisecond
	// minEtcdHeartbeat is the shortest heartbeat haven accepts; below it
	// the embedded etcd spends its time on heartbeats.
	minEtcdHeartbeat = 10 * time.Millisecond
	// maxEtcdElection is the longest election timeout etcd accepts.
	maxEtcdElection = 50 * time.Second
)

// Preset names, in the order they are offered to the user.
var presetNames = []string{"lan", "wan", "lan-fast"}

// Preset returns the named timing preset ("lan", "wan" or "lan-fast").
func Preset(name string) (Timing, bool) {
	const ms = time.Millisecond
	switch name {
	case "lan":
		// Renewals every 250 ms: the bound counts from when the newest
		// acknowledged renewal was sent, so renewing more often only adds
		// wake-ups (issue 20). The election rule caps it at 300 ms (2 ×
		// 500ms + 300ms + 400ms = lease_ttl − fence_margin); 50 ms are left
		// for a loaded host. The renew window rule alone would allow 650 ms.
		// With other timings overridden and renew_interval not, it is
		// lowered as far as lanRenewFloor to fit the rules (fitRenew).
		return preset(name, 2*time.Second, 250*ms, 400*ms, 300*ms, 50*ms, 500*ms), true
	case "lan-fast":
		// A 1s lease: the shortest etcd grants. The election rule then
		// needs etcd_election <= 100ms (2 × 100ms + 50ms + 200ms <= 1s −
		// 200ms), so heartbeats every 10ms, the least haven accepts: for
		// a dedicated low-jitter LAN, not a loaded or shared host.
		return preset(name, 1*time.Second, 50*ms, 200*ms, 200*ms, 10*ms, 100*ms), true
	case "wan":
		return preset(name, 10*time.Second, 1*time.Second, 1*time.Second, 2*time.Second, 250*ms, 2500*ms), true
	}
	return Timing{}, false
}

// preset is the Timing called name, its fields in the order of the
// timings: section.
func preset(name string, lease, renewEvery, renewTimeout, fenceMargin, heartbeat, election time.Duration) Timing {
	return Timing{
		Preset:        name,
		LeaseTTL:      lease,
		RenewInterval: renewEvery,
		RenewTimeout:  renewTimeout,
		FenceMargin:   fenceMargin,
		EtcdHeartbeat: heartbeat,
		EtcdElection:  election,
	}
}

// lanRenewFloor is the lan preset's renew_interval before issue 20: a
// config that overrides other timings of lan and passed the rules then
// still passes them (fitRenew).
const lanRenewFloor = 100 * time.Millisecond

// fitRenew is the renew_interval for timings whose renew_interval was not
// written in the file: the preset's, or, when the other (overridden) timings
// leave less room, the longest that fits the renew window and election
// rules, in whole 10 ms, but not below floor (config check then says what
// is wrong, as before).
func fitRenew(t Timing, floor time.Duration) time.Duration {
	window := t.FenceAfter() - t.RenewTimeout
	r := min(t.RenewInterval, window/2, window-2*t.EtcdElection)
	return max(r.Truncate(10*time.Millisecond), floor)
}

// FenceAfter is how long after the last successful renewal was sent an
// isolated active stops serving: lease_ttl − fence_margin. The renewal's
// send time is used because the store may have started the TTL at any
// moment after it, never before.
func (t Timing) FenceAfter() time.Duration { return t.LeaseTTL - t.FenceMargin }

// DriftAllowance is how much sooner the store may see a lease expire than the
// agent's own clock says, because the two clocks may run at slightly
// different rates: 1% of lease_ttl plus 10ms.
func (t Timing) DriftAllowance() time.Duration { return t.LeaseTTL/100 + 10*time.Millisecond }

// MinLeaseTTL is the shortest lease etcd grants as asked with this election
// timeout: 1.5 × etcd_election rounded up to whole seconds. etcd silently
// raises shorter TTLs, which would make the real lease longer than the one
// the fence deadline is computed from.
func (t Timing) MinLeaseTTL() time.Duration {
	return ceilSecond(t.EtcdElection * 3 / 2)
}

func ceilSecond(d time.Duration) time.Duration {
	s := (d + time.Second - 1) / time.Second * time.Second
	if s < time.Second {
		s = time.Second
	}
	return s
}

// storeRoundTrips is the estimate used for resigning and campaigning in
// the store once a failure is known: a few raft heartbeats.
func (t Timing) storeRoundTrips() time.Duration { return 4 * t.EtcdHeartbeat }

// WorstCase holds the worst-case failover times implied by a Timing: how
// long from the failure until another node is active.
type WorstCase struct {
	// ServiceCrash: the supervised process exits. Detection is immediate;
	// what remains is resign and campaign round trips in the store.
	ServiceCrash time.Duration
	// Unhealthy: checks fail while the service still runs. The slowest
	// check must fail fall times in a row. Zero when there are no checks.
	Unhealthy time.Duration
	// AgentLoss: the active's agent or node dies, the etcd leader is
	// elsewhere. Its lease must expire and be revoked.
	AgentLoss time.Duration
	// AgentLossLeader: the dead node was also the etcd leader. etcd first
	// elects a new leader (randomised, up to 2 × etcd_election), which
	// extends every lease by one election timeout.
	AgentLossLeader time.Duration
	// FenceAfter: how long after its last successful renewal was sent an
	// isolated active stops serving.
	FenceAfter time.Duration
}

// WorstCase computes the worst-case failover times for these timings and
// checks with the embedded etcd (see WorstCaseOn).
func (t Timing) WorstCase(checks []Check) WorstCase { return t.WorstCaseOn(checks, BackendEmbedded) }

// RevokeDelay is how long after a dead node's lease runs out the store may
// still keep its leader key: nothing with the embedded etcd, whose raft
// leader revokes it at its expiry; etcd's 500 ms revoke tick otherwise (an
// external etcd; the SQL stores are counted the same, conservatively).
func RevokeDelay(backend string) time.Duration {
	if backend == "" || backend == BackendEmbedded {
		return 0
	}
	return leaseRevokeTick
}

// WorstCaseOn computes the worst-case failover times for these timings and
// checks on the named store backend.
func (t Timing) WorstCaseOn(checks []Check, backend string) WorstCase {
	rt := t.storeRoundTrips()
	revoke := RevokeDelay(backend)
	var detect time.Duration
	for _, c := range checks {
		if d := time.Duration(c.Fall)*c.Interval + c.Timeout; d > detect {
			detect = d
		}
	}
	w := WorstCase{
		ServiceCrash:    rt,
		AgentLoss:       t.LeaseTTL + revoke + rt,
		AgentLossLeader: 2*t.EtcdElection + t.EtcdElection + t.LeaseTTL + revoke + rt,
		FenceAfter:      t.FenceAfter(),
	}
	if len(checks) > 0 {
		w.Unhealthy = detect + rt
	}
	return w
}

// timingProblem is a broken timing rule. Field is the field to change;
// Related are the other fields the rule involves, to blame instead when
// Field is not written in the file but one of them is.
type timingProblem struct {
	Field   string
	Related []string
	Msg     string
}

// checkTiming applies the safety rules that fencing depends on. demote is
// how long the on_demote hook may run (zero without a hook). The caller
// knows where the fields are in the file. All durations must already be
// known to be positive.
//
// The rules, named in the messages:
//
//  1. lease granularity: lease_ttl is whole seconds, at least 1s.
//  2. etcd minimum TTL: lease_ttl >= MinLeaseTTL.
//  3. etcd heartbeat/election: etcd_heartbeat >= 10ms, etcd_election >=
//     5 × etcd_heartbeat (and <= 50s, whole milliseconds: etcd's limits).
//  4. fence margin and renew window: fence_margin < lease_ttl, and
//     2 × renew_interval + renew_timeout <= lease_ttl − fence_margin.
//  5. demote before expiry: fence_margin >= demote + DriftAllowance.
//  6. renew_timeout > 0 (checked with the other positive durations).
//  7. check timeout: every check's timeout <= its interval.
func checkTiming(t Timing, demote time.Duration, checks []Check, etcd bool) []timingProblem {
	var ps []timingProblem
	add := func(fields, format string, args ...any) {
		f := strings.Fields(fields)
		ps = append(ps, timingProblem{Field: f[0], Related: f[1:], Msg: fmt.Sprintf(format, args...)})
	}

	// 1. lease granularity.
	if t.LeaseTTL < time.Second || t.LeaseTTL%time.Second != 0 {
		add("timings.lease_ttl", "lease granularity rule: lease_ttl is %s but etcd grants leases in whole seconds; use a whole number of seconds, at least 1s (e.g. %s)",
			t.LeaseTTL, ceilSecond(t.LeaseTTL))
	}

	// 2. etcd minimum TTL.
	if minTTL := t.MinLeaseTTL(); t.LeaseTTL < minTTL {
		add("timings.lease_ttl timings.etcd_election", "etcd minimum TTL rule: lease_ttl %s is below %s (1.5 × etcd_election %s, rounded up to whole seconds), and etcd would silently raise it, breaking the fence deadline; set lease_ttl to at least %s or lower etcd_election",
			t.LeaseTTL, minTTL, t.EtcdElection, minTTL)
	}

	// 3. etcd heartbeat and election.
	if t.EtcdHeartbeat < minEtcdHeartbeat {
		add("timings.etcd_heartbeat", "etcd heartbeat rule: etcd_heartbeat %s is below %s; raise it to at least %s", t.EtcdHeartbeat, minEtcdHeartbeat, minEtcdHeartbeat)
	} else if t.EtcdHeartbeat%time.Millisecond != 0 {
		add("timings.etcd_heartbeat", "etcd heartbeat rule: etcd_heartbeat %s is not whole milliseconds, which is all etcd can take; round it, e.g. to %s", t.EtcdHeartbeat, t.EtcdHeartbeat.Round(time.Millisecond))
	}
	if t.EtcdElection < 5*t.EtcdHeartbeat {
		add("timings.etcd_election timings.etcd_heartbeat", "etcd election rule: etcd_election %s is less than 5 × etcd_heartbeat (%s), etcd's own recommendation, so a few late heartbeats would start needless elections; set etcd_election to at least %s or lower etcd_heartbeat",
			t.EtcdElection, 5*t.EtcdHeartbeat, 5*t.EtcdHeartbeat)
	} else if t.EtcdElection > maxEtcdElection {
		add("timings.etcd_election", "etcd election rule: etcd_election %s is above %s, the most etcd accepts; lower it", t.EtcdElection, maxEtcdElection)
	} else if t.EtcdElection%time.Millisecond != 0 {
		add("timings.etcd_election", "etcd election rule: etcd_election %s is not whole milliseconds, which is all etcd can take; round it, e.g. to %s", t.EtcdElection, t.EtcdElection.Round(time.Millisecond))
	}

	// 4. fence margin and renew window.
	if t.FenceMargin >= t.LeaseTTL {
		add("timings.fence_margin timings.lease_ttl", "fence margin rule: fence_margin %s must be less than lease_ttl %s, or the active would stop serving as soon as it renews; lower fence_margin or raise lease_ttl",
			t.FenceMargin, t.LeaseTTL)
	} else if need, window := 2*t.RenewInterval+t.RenewTimeout, t.FenceAfter(); need > window {
		add("timings.renew_interval timings.renew_timeout timings.fence_margin timings.lease_ttl", "renew window rule: 2 × renew_interval + renew_timeout = %s exceeds lease_ttl − fence_margin = %s; the active stops serving lease_ttl − fence_margin after the last renewal it sent, so that window must hold one lost renewal plus the next renewal and its timeout, or a single dropped renewal fences a healthy active; lower renew_interval or renew_timeout, lower fence_margin, or raise lease_ttl",
			need, window)
	}

	// 4b. an etcd election must not fence a healthy active.
	if etcd {
		if need, window := 2*t.EtcdElection+t.RenewInterval+t.RenewTimeout, t.FenceAfter(); need > window {
			add("timings.lease_ttl timings.etcd_election timings.fence_margin", "election rule: 2 × etcd_election + renew_interval + renew_timeout = %s exceeds lease_ttl − fence_margin = %s; when the etcd leader is lost, no renewal succeeds until a new one is elected, which takes up to 2 × etcd_election, so a healthy active would fence itself whenever any member fails; raise lease_ttl or lower etcd_election",
				need, window)
		}
	}

	// 5. demote before expiry.
	if need := demote + t.DriftAllowance(); t.FenceMargin < need {
		add("timings.fence_margin hooks.on_demote.timeout timings.lease_ttl", "demote rule: fence_margin %s is less than the on_demote timeout %s + clock drift allowance %s (lease_ttl/100 + 10ms) = %s; the active must have finished demoting before its lease can expire in the store, or two nodes may act as active at once; raise fence_margin to at least %s or lower hooks.on_demote.timeout",
			t.FenceMargin, demote, t.DriftAllowance(), need, need)
	}

	// 7. check timeout.
	for i, c := range checks {
		if c.Timeout > c.Interval {
			add(fmt.Sprintf("checks[%d].timeout", i), "check timeout rule: timeout %s exceeds interval %s, so probes would overlap; lower timeout or raise interval", c.Timeout, c.Interval)
		}
	}
	return ps
}
