package sessions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/mysql"
	"github.com/haven-ha/haven/internal/store/postgres"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// sqlStore is a SQL store package's Store as the test uses it.
type sqlStore interface {
	ha.Coordinator
	SQLDB
}

// TestSQLStores runs the session store on real PostgreSQL and MariaDB
// servers: the backend's contract, then two servers (active and standby)
// through a failover in which the deposed active's write is refused by the
// fence and every acknowledged write is on the new active.
func TestSQLStores(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		srv := storetest.StartPostgres(t)
		testSQLStore(t, func(ctx context.Context, node string) (sqlStore, error) {
			return postgres.Open(ctx, postgres.Options{Cluster: "c1", Node: node, DSN: srv.DSN})
		})
	})
	t.Run("mariadb", func(t *testing.T) {
		t.Parallel()
		srv := storetest.StartMariaDB(t)
		testSQLStore(t, func(ctx context.Context, node string) (sqlStore, error) {
			return mysql.Open(ctx, mysql.Options{Cluster: "c1", Node: node, DSN: srv.DSN})
		})
	})
}

func testSQLStore(t *testing.T, open func(ctx context.Context, node string) (sqlStore, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stores := map[string]sqlStore{}
	data := map[string]*SQLData{}
	for _, n := range []string{"a", "b"} {
		s, err := open(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.NewSession(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		stores[n] = s
		if data[n], err = NewSQLData(ctx, s, SQLOptions{WatchInterval: 20 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	da, db := data["a"], data["b"]
	ea, err := stores["a"].Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}

	// The contract, as etcd keeps it.
	rev1, err := da.CommitSessions(ctx, "a", ea, []ha.SessionRecord{
		{Key: "k1", Value: []byte("v1"), ExpireAt: 1e15},
		{Key: "h", Value: []byte("\x00fields"), Hash: true},
		{Key: strings.Repeat("long key ", 1000), Value: []byte("v")},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		d     *SQLData
		node  string
		epoch ha.Epoch
	}{{db, "b", ea}, {da, "a", ea + 1}, {da, "a", ea - 1}} {
		if _, err := c.d.CommitSessions(ctx, c.node, c.epoch, []ha.SessionRecord{{Key: "k1", Value: []byte("no")}}); !errors.Is(err, ha.ErrNotLeader) {
			t.Fatalf("commit by %s at epoch %d (active: a at %d): %v, want ErrNotLeader", c.node, c.epoch, ea, err)
		}
	}
	recs, rev, err := db.LoadSessions(ctx)
	if err != nil || rev != rev1 || len(recs) != 3 {
		t.Fatalf("load: %d records at %d, %v; want 3 at %d", len(recs), rev, err, rev1)
	}
	for _, r := range recs {
		if r.Key == "k1" && (string(r.Value) != "v1" || r.ExpireAt != 1e15 || r.Hash || r.Rev != rev1) {
			t.Fatalf("k1 loaded as %+v", r)
		}
		if r.Key == "h" && !r.Hash {
			t.Fatalf("h loaded as %+v", r)
		}
	}
	seen := make(chan []ha.SessionRecord, 10)
	wctx, wcancel := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() { werr <- db.WatchSessions(wctx, rev1, func(r []ha.SessionRecord) { seen <- r }) }()
	rev2, err := da.CommitSessions(ctx, "a", ea, []ha.SessionRecord{{Key: "k1", Deleted: true}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-seen:
		if len(got) != 1 || got[0].Key != "k1" || !got[0].Deleted || got[0].Rev != rev2 {
			t.Fatalf("watch: %+v, want k1 deleted at %d", got, rev2)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not report the deletion")
	}
	wcancel()
	<-werr
	got, err := db.GetSessions(ctx, []string{"k1", "h", "nope"})
	if err != nil || len(got) != 3 || !got[0].Deleted || got[0].Rev != rev2 || got[1].Deleted || got[1].Rev != rev1 || !got[2].Deleted || got[2].Rev != rev2 {
		t.Fatalf("get: %+v, %v", got, err)
	}
	// Active-active's compare-and-swap.
	if _, ok, err := db.CommitSessionsIf(ctx, []ha.SessionRecord{{Key: "h", Value: []byte("x")}}, map[string]int64{"h": rev1}); err != nil || !ok {
		t.Fatalf("CAS at the current revision: %v, %v", ok, err)
	}
	if _, ok, err := db.CommitSessionsIf(ctx, []ha.SessionRecord{{Key: "h", Value: []byte("y")}}, map[string]int64{"h": rev1}); err != nil || ok {
		t.Fatalf("CAS at an old revision: %v, %v; want refused", ok, err)
	}
	if _, ok, err := db.CommitSessionsIf(ctx, []ha.SessionRecord{{Key: "k1", Value: []byte("z")}}, map[string]int64{"k1": 0}); err != nil || !ok {
		t.Fatalf("CAS on a deleted key expected absent: %v, %v", ok, err)
	}

	// The largest batches the group commit makes (docs/sessions.md,
	// Limits) fit one request: MariaDB's default max_allowed_packet.
	big := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
	half := (commandBytes - 2*MaxKeyBytes - 2*keyOverhead) / 2
	for _, batch := range [][]ha.SessionRecord{
		{{Key: string(big('p', MaxKeyBytes)), Value: big('v', half)}, {Key: string(big('q', MaxKeyBytes)), Value: big('w', half)}},
		{{Key: string(big('r', MaxKeyBytes)), Value: big('v', DefaultMaxValueBytes)}},
	} {
		if _, err := da.CommitSessions(ctx, "a", ea, batch); err != nil {
			t.Fatalf("the largest batch: %v", err)
		}
		for i := range batch {
			batch[i] = ha.SessionRecord{Key: batch[i].Key, Deleted: true}
		}
		if _, err := da.CommitSessions(ctx, "a", ea, batch); err != nil {
			t.Fatal(err)
		}
	}

	// Two servers through a failover.
	a, b := startNode(t, da, "a"), startNode(t, db, "b")
	a.epoch.Store(int64(ea))
	a.active.Store(true)
	ca, cb := dial(t, a.addr), dial(t, b.addr)
	eventually(t, "a takes writes", func() bool { return ca.do("SET", "s1", "one") == "+OK\r\n" })
	if r := ca.do("SET", "s2", "two", "PX", "600000"); r != "+OK\r\n" {
		t.Fatalf("SET: %q", r)
	}
	if r := cb.do("SET", "x", "y"); r != "-"+errReadOnly+"\r\n" {
		t.Fatalf("standby write: %q", r)
	}
	eventually(t, "the standby sees the writes", func() bool { return cb.do("GET", "s2") == "$3\r\ntwo\r\n" })

	// b takes the role in the database; a has not noticed yet.
	if err := stores["a"].Resign(ctx, "a", ea); err != nil {
		t.Fatal(err)
	}
	eb, err := stores["b"].Campaign(ctx, "b")
	if err != nil || eb <= ea {
		t.Fatalf("b's campaign: %d, %v", eb, err)
	}
	if r := ca.do("SET", "s1", "lost"); !strings.HasPrefix(r, "-ERR the write was not confirmed") {
		t.Fatalf("the deposed active's write: %q", r)
	}
	a.active.Store(false)
	b.epoch.Store(int64(eb))
	b.active.Store(true)
	eventually(t, "b takes writes", func() bool { return cb.do("SET", "s3", "three") == "+OK\r\n" })
	for k, want := range map[string]string{"s1": "$3\r\none\r\n", "s2": "$3\r\ntwo\r\n", "k1": "$1\r\nz\r\n"} {
		if r := cb.do("GET", k); r != want {
			t.Fatalf("GET %s on the new active: %q, want %q", k, r, want)
		}
	}
	if r := cb.do("PTTL", "s2"); !strings.HasPrefix(r, ":") || r == ":-1\r\n" {
		t.Fatalf("PTTL s2 after the failover: %q", r)
	}
	eventually(t, "a follows b", func() bool { return ca.do("GET", "s3") == "$5\r\nthree\r\n" })

	// Old tombstones go; a watcher that needed them loads again, and one
	// that did not goes on.
	db.keep, db.every = 2, 1
	_, behind, err := da.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, err := db.CommitSessions(ctx, "b", eb, []ha.SessionRecord{{Key: "gone", Deleted: true}, {Key: fmt.Sprint("t", i), Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := da.WatchSessions(ctx, behind, func([]ha.SessionRecord) {}); !errors.Is(err, errWatchBehind) {
		t.Fatalf("a watch 4 revisions behind, tombstones kept for 2: %v, want errWatchBehind", err)
	}
	_, now, err := da.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel = context.WithCancel(ctx)
	defer wcancel()
	go func() { werr <- da.WatchSessions(wctx, now, func(r []ha.SessionRecord) { seen <- r }) }()
	if _, err := db.CommitSessions(ctx, "b", eb, []ha.SessionRecord{{Key: "after", Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-seen:
		if len(got) != 1 || got[0].Key != "after" {
			t.Fatalf("watch after the purge: %+v", got)
		}
	case err := <-werr:
		t.Fatalf("watch after the purge: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not report the write after the purge")
	}

	// Active-active on the database: every increment of one counter from
	// two nodes counts once.
	var aa []ha.SessionData
	for _, n := range []string{"a", "b"} {
		d, err := NewSQLData(ctx, stores[n], SQLOptions{WatchInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		aa = append(aa, d)
	}
	testActiveActive(t, aa[0], aa[1])
}
