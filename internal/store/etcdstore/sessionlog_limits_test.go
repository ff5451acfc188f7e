package etcdstore

import (
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// TestPackedLoadPagesTheLog: a load reads the log logPage entries a
// request (256 made a response of up to 256 MiB), and still sees it at
// one revision: an entry committed between two pages is not in it, and
// the next load has it.
func TestPackedLoadPagesTheLog(t *testing.T) {
	srv := storetest.StartEtcd(t)
	e := newPackedEnv(t, srv.Addr)
	a := e.node("a", true)
	a.promote()
	a.fill(50)
	b := e.node("b", false)
	pages := 0
	b.l.hook = func(step string) {
		if step != "log-page" {
			return
		}
		if pages++; pages == 1 && !a.write("late", "x") {
			t.Error("a's write refused")
		}
	}
	got := b.load()
	b.l.hook = func(string) {}
	if pages < 3 {
		t.Fatalf("the load read 50 log entries in %d full pages of %d; want pages of at most 16", pages, logPage)
	}
	if _, ok := got["late"]; ok {
		t.Fatal("the load has an entry committed after its first page")
	}
	if got := b.load(); got["late"] != "x" {
		t.Fatalf("the next load: late=%q", got["late"])
	}
	e.checkLinearizable()
}

// TestPackedDecodeBatchCopiesValues: the values a load keeps do not point
// into the chunk or log entry they came from, which would keep the whole
// buffer (1 MiB for a chunk) in memory while any one of them lives.
func TestPackedDecodeBatchCopiesValues(t *testing.T) {
	var recs []ha.SessionRecord
	for i := range 10 {
		recs = append(recs, ha.SessionRecord{Key: fmt.Sprint("k", i), Value: []byte(fmt.Sprint("value ", i))})
	}
	buf := encodeBatch(recs)
	got, err := decodeBatch(buf, 1)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&buf[len(buf)-1]))
	for i, r := range got {
		if string(r.Value) != string(recs[i].Value) {
			t.Fatalf("record %d: %q", i, r.Value)
		}
		if p := uintptr(unsafe.Pointer(&r.Value[0])); p >= lo && p <= hi {
			t.Fatalf("record %d's value points into the decoded buffer", i)
		}
	}
}

// TestAAWriteRefusedAfterMigration: while a cluster changes mode, an
// active-active node may still write one key per session after an
// active-passive active has migrated the store to the packed layout;
// the migration deletes those keys, so such a write would be lost. It is
// refused (ErrSessionsPacked). Before the migration, a write comparing
// MaxCompareKeys keys commits (the layout's compare is the 128th).
func TestAAWriteRefusedAfterMigration(t *testing.T) {
	srv := storetest.StartEtcd(t)
	e := newPackedEnv(t, srv.Addr)
	b := e.node("b", false)
	var recs []ha.SessionRecord
	expect := map[string]int64{}
	for i := range MaxCompareKeys {
		k := fmt.Sprint("k", i)
		recs = append(recs, ha.SessionRecord{Key: k, Value: []byte("v")})
		expect[k] = 0
	}
	if _, ok, err := b.s.CommitSessionsIf(e.ctx, recs, expect); err != nil || !ok {
		t.Fatalf("an active-active write of %d keys: ok %v, %v", MaxCompareKeys, ok, err)
	}
	a := e.node("a", true)
	a.promote() // migrates
	if st := a.l.Stats(); st.Layout != layoutPacked {
		t.Fatalf("a's layout: %+v", st)
	}
	_, ok, err := b.s.CommitSessionsIf(e.ctx, []ha.SessionRecord{{Key: "late", Value: []byte("x")}}, map[string]int64{"late": 0})
	if !errors.Is(err, ErrSessionsPacked) {
		t.Fatalf("an active-active write after the migration: ok %v, %v; want ErrSessionsPacked", ok, err)
	}
	if got := a.load(); len(got) != MaxCompareKeys || got["late"] != "" {
		t.Fatalf("the packed store has %d keys (late=%q), want %d", len(got), got["late"], MaxCompareKeys)
	}
}
