package proxy

import (
	"testing"
	"time"
)

// TestQuarantineCore: strikes double the quarantine; failures of requests
// sent during it are the same episode; a 200 sent during it is not
// trusted; winning an epoch lifts it.
func TestQuarantineCore(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	q := NewQuarantine(100 * time.Millisecond)
	if !q.Suspect("n1", at(0), at(5), time.Time{}) || !q.Until("n1").Equal(at(105)) {
		t.Fatalf("first strike: until %s, want 105ms", q.Until("n1").Sub(t0))
	}
	if q.Suspect("n1", at(50), at(60), time.Time{}) {
		t.Fatal("a request sent during the quarantine counted as a strike")
	}
	if q.Trusted("n1", at(100), true) || !q.Trusted("n1", at(100), false) || !q.Trusted("n1", at(110), true) {
		t.Fatal("a 200 sent during the quarantine must not be trusted; one sent after it must")
	}
	if !q.Suspect("n1", at(120), at(130), time.Time{}) || !q.Until("n1").Equal(at(330)) {
		t.Fatalf("second strike: until %s, want 330ms (200ms)", q.Until("n1").Sub(t0))
	}
	q.NewLeader("n1")
	if !q.Until("n1").IsZero() || !q.Trusted("n1", at(140), true) {
		t.Fatal("a node that won an epoch is still quarantined")
	}
	if !q.Suspect("n1", at(150), at(160), time.Time{}) || !q.Until("n1").Equal(at(260)) {
		t.Fatalf("after a new term the strikes start over: until %s, want 260ms", q.Until("n1").Sub(t0))
	}
}
