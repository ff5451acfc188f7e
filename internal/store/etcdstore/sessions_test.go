package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// TestSessionData: fenced batches, a consistent load, and a watch that
// carries every change, on a real etcd.
func TestSessionData(t *testing.T) {
	srv := storetest.StartEtcd(t)
	p := pair(t, srv.Addr)
	a, b := p.A.(*Store), p.B.(*Store)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := a.NewSession(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	epoch, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	recs := []ha.SessionRecord{{Key: "s1", Value: []byte("v1"), ExpireAt: 42}, {Key: "s2", Value: []byte{}}}
	if _, err := a.CommitSessions(ctx, "a", epoch, recs); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		node  string
		epoch ha.Epoch
	}{{"a", epoch + 1}, {"b", epoch}} {
		if _, err := b.CommitSessions(ctx, c.node, c.epoch, []ha.SessionRecord{{Key: "s1", Value: []byte("bad")}}); !errors.Is(err, ha.ErrNotLeader) {
			t.Fatalf("commit as %s at %d: %v, want ErrNotLeader", c.node, c.epoch, err)
		}
	}
	got, rev, err := b.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Key != "s1" || string(got[0].Value) != "v1" || got[0].ExpireAt != 42 || got[1].Key != "s2" || len(got[1].Value) != 0 {
		t.Fatalf("load: %+v", got)
	}
	seen := make(chan []ha.SessionRecord, 10)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go b.WatchSessions(wctx, rev, func(r []ha.SessionRecord) { seen <- r })
	if _, err := a.CommitSessions(ctx, "a", epoch, []ha.SessionRecord{{Key: "s1", Deleted: true}, {Key: "s3", Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-seen:
		if len(r) != 2 || !r[0].Deleted || r[0].Key != "s1" || r[1].Key != "s3" || string(r[1].Value) != "x" {
			t.Fatalf("watch: %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("the watch saw nothing")
	}
	// Compare-and-swap (active-active): at the revision seen, or not at all.
	cur, err := b.GetSessions(ctx, []string{"s3", "nope"})
	if err != nil || len(cur) != 2 || string(cur[0].Value) != "x" || cur[0].Rev == 0 || !cur[1].Deleted {
		t.Fatalf("get: %+v %v", cur, err)
	}
	if _, ok, err := b.CommitSessionsIf(ctx, []ha.SessionRecord{{Key: "s3", Value: []byte("y")}}, map[string]int64{"s3": cur[0].Rev - 1}); err != nil || ok {
		t.Fatalf("stale compare-and-swap: ok %v, %v", ok, err)
	}
	if _, ok, err := b.CommitSessionsIf(ctx, []ha.SessionRecord{{Key: "s3", Value: []byte("y")}, {Key: "nope", Value: []byte("z")}}, map[string]int64{"s3": cur[0].Rev, "nope": 0}); err != nil || !ok {
		t.Fatalf("compare-and-swap: ok %v, %v", ok, err)
	}
	// Session keys are not part of the agents' snapshot.
	snap := <-a.Watch(ctx)
	if snap.Leader.Node != "a" {
		t.Fatalf("snapshot: %+v", snap)
	}
}
