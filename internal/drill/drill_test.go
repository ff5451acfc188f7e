package drill

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

func op(kind string, start, end time.Duration, ok bool, node string, epoch int64, served time.Duration) Op {
	o := Op{Kind: kind, Start: start, End: end, OK: ok, Node: node, Epoch: epoch, ServedAt: served}
	if served > 0 {
		o.ServedTo = served + ms
	}
	return o
}

func TestOutage(t *testing.T) {
	ops := []Op{
		op(OpGet, 0, 10*ms, true, "n1", 5, 5*ms),
		op(OpGet, 90*ms, 100*ms, true, "n1", 5, 95*ms),   // before the fault
		op(OpGet, 110*ms, 900*ms, false, "", 0, 0),       // failed during it
		op(OpGet, 120*ms, 700*ms, true, "n2", 9, 690*ms), // held, then answered
		op(OpGet, 710*ms, 720*ms, true, "n2", 9, 715*ms),
	}
	gap, at := Outage(ops, 100*ms, 720*ms)
	if gap != 600*ms || at != 100*ms {
		t.Fatalf("outage %s at %s, want 600ms at 100ms", gap, at)
	}
	// No success after the fault: the outage runs to the end.
	if gap, _ := Outage(ops[:3], 100*ms, time.Second); gap != 900*ms {
		t.Fatalf("outage %s, want 900ms", gap)
	}
	if n, by := Errors(ops, 100*ms, time.Second); n != 1 || by[OpGet] != 1 {
		t.Fatalf("errors %d %v", n, by)
	}
}

func TestSplitBrain(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []Op
		want string
	}{
		{"clean failover", []Op{
			op(OpGet, 0, 10*ms, true, "n1", 5, 5*ms),
			op(OpGet, 20*ms, 900*ms, true, "n2", 9, 800*ms),
			op(OpGet, 30*ms, 40*ms, true, "n1", 5, 35*ms), // older epoch, served earlier
		}, ""},
		{"old active served after the new one", []Op{
			op(OpGet, 0, 10*ms, true, "n2", 9, 5*ms),
			op(OpGet, 0, 30*ms, true, "n1", 5, 20*ms),
		}, "n1 answered at epoch 5"},
		{"confirmations that overlap are no evidence", []Op{
			op(OpGet, 0, 10*ms, true, "n2", 9, 5*ms),      // confirmed in [5, 6]
			op(OpGet, 0, 10*ms, true, "n1", 5, 5500*1000), // confirmed in [5.5, 6.5]
		}, ""},
		{"two nodes at one epoch", []Op{
			op(OpGet, 0, 10*ms, true, "n1", 5, 5*ms),
			op(OpGet, 0, 30*ms, true, "n2", 5, 20*ms),
		}, "both answered as active at epoch 5"},
		{"epoch backwards for clients (no server times)", []Op{
			op(OpGet, 0, 10*ms, true, "n2", 9, 0),
			op(OpGet, 20*ms, 30*ms, true, "n1", 5, 0),
		}, "epoch went backwards"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := SplitBrain(tc.ops)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("SplitBrain = %q, want %q", got, tc.want)
			}
		})
	}
}

func reg(kind string, start, end time.Duration, key, value string, ok, unknown bool) Op {
	return Op{Kind: kind, Key: key, Value: value, Found: value != "", Start: start, End: end, OK: ok, Unknown: unknown}
}

func TestLinearizable(t *testing.T) {
	good := []Op{
		reg(OpRegW, 0, 10*ms, "a", "1", true, false),
		reg(OpRegR, 20*ms, 30*ms, "a", "1", true, false),
		reg(OpRegW, 40*ms, 50*ms, "a", "2", false, true), // unknown: may apply later
		reg(OpRegR, 60*ms, 70*ms, "a", "1", true, false),
		reg(OpRegR, 80*ms, 90*ms, "a", "2", true, false),
		reg(OpRegW, 100*ms, 110*ms, "b", "x", false, false), // refused: left out
		reg(OpRegR, 120*ms, 130*ms, "b", "", true, false),
	}
	if res, n := Linearizable(good, 10*time.Second); res != "Ok" || n != 6 {
		t.Fatalf("good history: %s (%d ops)", res, n)
	}
	lost := []Op{
		reg(OpRegW, 0, 10*ms, "a", "1", true, false),
		reg(OpRegW, 20*ms, 30*ms, "a", "2", true, false),
		reg(OpRegR, 40*ms, 50*ms, "a", "1", true, false), // an acknowledged write undone
	}
	if res, _ := Linearizable(lost, 10*time.Second); res != "Illegal" {
		t.Fatalf("stale read: %s, want Illegal", res)
	}
	// An unknown write nobody read is left out; one that was read still
	// orders what follows it.
	unread := append(append([]Op(nil), good...), reg(OpRegW, 140*ms, 150*ms, "b", "never-read", false, true))
	if res, n := Linearizable(unread, 10*time.Second); res != "Ok" || n != 6 {
		t.Fatalf("unread unknown write: %s (%d ops), want Ok with it left out", res, n)
	}
	undone := []Op{
		reg(OpRegW, 0, 10*ms, "a", "1", true, false),
		reg(OpRegW, 5*ms, 15*ms, "a", "u", false, true),
		reg(OpRegR, 20*ms, 30*ms, "a", "u", true, false),
		reg(OpRegR, 40*ms, 50*ms, "a", "1", true, false), // "u" came after "1": it cannot come back
	}
	if res, _ := Linearizable(undone, 10*time.Second); res != "Illegal" {
		t.Fatalf("a read unknown write undone: %s, want Illegal", res)
	}
	early := []Op{
		reg(OpRegR, 0, 10*ms, "a", "z", true, false), // read before the write began
		reg(OpRegW, 20*ms, 30*ms, "a", "z", false, true),
	}
	if res, _ := Linearizable(early, 10*time.Second); res != "Illegal" {
		t.Fatalf("a value read before its write began: %s, want Illegal", res)
	}
}

func TestReports(t *testing.T) {
	r := Result{Name: "agent-crash", Title: "agent crash", What: "n2 took over from n1 (epoch 5 → 9)", RTO: 1300 * ms,
		Requests: 100, Errors: 2, ByKind: map[string]int{OpWrite: 1, OpRegW: 1}, Acked: 40, Verdict: "met", Target: "RTO ≤ lease + 0.5 s",
		Marks: []Mark{{At: time.Second, What: "fault"}, {At: 2300 * ms, What: "n2 active (epoch 9)"}, {At: 3 * time.Second, What: "heal"}, {At: 5 * time.Second, What: "whole"}},
		From:  0, To: 6 * time.Second,
		Ops: []Op{op(OpGet, 0, 10*ms, true, "n1", 5, 5*ms), op(OpGet, time.Second, 2300*ms, false, "", 0, 0), op(OpGet, 1200*ms, 2300*ms, true, "n2", 9, 2290*ms)}}
	skipped := Result{Name: "active-cut", Skipped: "needs network namespaces: run as root", Verdict: "skipped"}
	var table, md, svg bytes.Buffer
	WriteTable(&table, []Result{r, skipped})
	for _, want := range []string{"agent-crash", "1.30s", "2 of 100 (2 writes)", "0 of 40", "skipped: needs network namespaces"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	WriteMarkdown(&md, Report{Time: time.Unix(0, 0), Command: "haven drill --sandbox", Results: []Result{r, skipped}}, "drill.svg")
	for _, want := range []string{"| agent-crash | n2 took over", "![requests over time, per scenario](drill.svg)", "t=1.000s fault"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	if err := WriteSVG(&svg, []Result{r, skipped}); err != nil {
		t.Fatal(err)
	}
	s := svg.String()
	if !strings.HasPrefix(s, "<svg") || !strings.HasSuffix(s, "</svg>\n") || strings.Count(s, ">fault<") != 1 || !strings.Contains(s, `stroke="#d62828"`) {
		t.Errorf("unexpected SVG:\n%s", s)
	}
}

// TestRTOSplit: when a second gap follows the failover (the new active
// served, then clients were held again), the RTO is that longer gap, and
// the report says when the new active answered, when clients were first
// served again and when the longest gap began, rather than letting the
// RTO pass for the failover's own time.
func TestRTOSplit(t *testing.T) {
	ops := []Op{
		op(OpGet, 900*ms, 950*ms, true, "n1", 5, 940*ms),
		op(OpGet, 1100*ms, 2100*ms, true, "n2", 9, 2090*ms), // held through the failover
		op(OpGet, 2200*ms, 2300*ms, true, "n2", 9, 2290*ms),
		op(OpGet, 2400*ms, 4400*ms, true, "n2", 9, 4390*ms), // held again: the second gap
	}
	fault := 1000 * ms
	if got := FirstSuccess(ops, fault); got != 1100*ms {
		t.Fatalf("FirstSuccess = %s, want 1.1s", got)
	}
	if got := FirstSuccess(ops[:1], fault); got != -1 {
		t.Fatalf("FirstSuccess with no success after the fault = %s, want -1", got)
	}
	r := Result{Marks: []Mark{{At: fault, What: "fault"}, {At: 2050 * ms, What: "n2 active (epoch 9)"}}}
	r.RTO, r.RTOAt = Outage(ops, fault, 5*time.Second)
	r.FirstOK, r.ActiveAfter = FirstSuccess(ops, fault), 1050*ms
	if r.RTO != 2100*ms {
		t.Fatalf("RTO %s, want 2.1s (the second gap)", r.RTO)
	}
	want := "new active at +1.05s, clients served again at +1.10s, then the longest gap from +1.30s"
	if got := r.split(); got != want {
		t.Fatalf("split %q, want %q", got, want)
	}
	if got := rtoCell(r); !strings.Contains(got, want) {
		t.Fatalf("the RTO cell %q does not split the outage", got)
	}
	// One stretch from the fault to the first success: the split says when
	// the new active answered and when clients were served, nothing more.
	one := Result{Marks: r.Marks, FirstOK: 1100 * ms, ActiveAfter: 1050 * ms}
	one.RTO, one.RTOAt = Outage(ops[:3], fault, 2300*ms)
	if got, want := one.split(), "new active at +1.05s, clients served again at +1.10s"; got != want {
		t.Fatalf("split %q, want %q", got, want)
	}
}

// TestWaitLeaderAway: before a node-loss fault the drill waits until the
// lost node's member no longer leads etcd, and says which case it measured
// when it does not move in time or cannot be told.
func TestWaitLeaderAway(t *testing.T) {
	seq := func(answers ...string) func() string {
		return func() string {
			a := answers[0]
			if len(answers) > 1 {
				answers = answers[1:]
			}
			return a
		}
	}
	for _, tc := range []struct {
		name    string
		leader  func() string
		want    string
		waited  bool
		timeout time.Duration
	}{
		{"elsewhere at once", seq("n2"), etcdNotLed, false, time.Minute},
		{"moves after a while", seq("n1", "n1", "", "n1", "n3"), etcdNotLed, true, time.Minute},
		{"never moves", seq("n1"), etcdLed, true, 20 * ms},
		{"cannot tell", seq(""), etcdUnknown, true, 20 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, waited, err := waitLeaderAway(context.Background(), tc.leader, "n1", tc.timeout, ms)
			if err != nil || got != tc.want || (waited > 0) != tc.waited {
				t.Fatalf("waitLeaderAway = %q after %s (%v), want %q (waited: %v)", got, waited, err, tc.want, tc.waited)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := waitLeaderAway(ctx, seq("n1"), "n1", time.Minute, ms); err == nil {
		t.Fatal("waitLeaderAway went on after its context ended")
	}
	r := Result{RTO: 2100 * ms, EtcdLeader: etcdNotLed}
	if s := r.Summary(); !strings.Contains(s, "etcd leader: not the lost node") {
		t.Fatalf("Summary does not say which case was measured: %s", s)
	}
	if c := rtoCell(r); !strings.Contains(c, "not the lost node") {
		t.Fatalf("the report's RTO cell does not say which case was measured: %s", c)
	}
}

// TestLostFilesMissTheTarget: a replicated file written before the fault
// and not on the active after it misses the scenario's target, and the
// report's RPO cell and summary count it per scenario (issue 16).
func TestLostFilesMissTheTarget(t *testing.T) {
	r := Result{Name: "agent-crash", Acked: 40, Folders: &FolderCheck{Written: 20, Lost: []string{"drill-1-agent-crash-1/f07"}}}
	if v := verdict(Scenario{}, r, 0); v != "missed: lost files" {
		t.Errorf("verdict with a lost file: %q, want missed: lost files", v)
	}
	if c := lostCell(r); !strings.Contains(c, "files 1 of 20") {
		t.Errorf("RPO cell %q does not count the lost file", c)
	}
	if s := r.Summary(); !strings.Contains(s, "1/20 shipped files lost") {
		t.Errorf("summary %q does not count the lost file", s)
	}
	r.Folders.Lost = nil
	if v := verdict(Scenario{}, r, 0); v != "met" {
		t.Errorf("verdict with every file there: %q, want met", v)
	}
	if c := lostCell(r); !strings.Contains(c, "files 0 of 20") {
		t.Errorf("RPO cell %q, want files 0 of 20", c)
	}
}
