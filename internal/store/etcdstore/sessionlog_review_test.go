package etcdstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// TestPackedDecodeBatchOverflow: a log entry or chunk whose key length is
// near 2^64 (damaged, or written by hand) is an error, not a panic: every
// node loads the same entry, so a panic would crash-loop the cluster.
func TestPackedDecodeBatchOverflow(t *testing.T) {
	for _, kl := range []uint64{^uint64(0) - 4, ^uint64(0), 1 << 63} {
		b := binary.AppendUvarint(nil, kl)
		b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("key length %d: decodeBatch panics: %v", kl, p)
				}
			}()
			if _, err := decodeBatch(b, 1); !errors.Is(err, errBadBatch) {
				t.Fatalf("key length %d: %v, want errBadBatch", kl, err)
			}
		}()
	}
}

// TestCompactionStaleChunkWrite: a chunk write of an earlier compaction
// attempt of the same epoch whose outcome was unknown (a timeout) may be
// applied late, while a later attempt writes the same generation (the
// fence does not stop it: same node, same epoch). It must not land in the
// snapshot that snap/current names, or no node can load the store (its
// checksum fails) — nor may the later attempt's chunk replace it unseen.
func TestCompactionStaleChunkWrite(t *testing.T) {
	srv := storetest.StartEtcd(t)
	for _, when := range []string{"read", "written"} {
		t.Run(when, func(t *testing.T) {
			e := newPackedEnv(t, srv.Addr)
			a := e.node("a", true)
			a.promote() // migrates the empty store: generation 1
			a.fill(40)
			cur, err := a.l.read(e.ctx, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			next := cur.cur.Gen + 1
			stale := encodeBatch([]ha.SessionRecord{{Key: "k01", Value: []byte("stale")}})
			a.l.hook = func(step string) {
				if step != when {
					return
				}
				// The earlier attempt's chunk 0 of the same generation,
				// arriving now.
				_ = a.l.putChunk(e.ctx, a.name, a.epoch, next, 0, stale)
			}
			err = a.l.Compact(e.ctx, a.name, a.epoch)
			a.l.hook = func(string) {}
			t.Logf("compaction with a late chunk write (%s): %v", when, err)
			// Whatever the compaction did, the store loads, and a next
			// compaction succeeds.
			e.node("b", false).load()
			if err := a.l.Compact(e.ctx, a.name, a.epoch); err != nil {
				t.Fatalf("the next compaction: %v", err)
			}
			a.write("k02", "after")
			e.node("c", false).load()
			e.checkLinearizable()
		})
	}
}

// TestPackedLateCommitAfterReload: a commit whose outcome the active never
// learnt (its attempts timed out; the session store failed the write and
// reloaded at the same epoch) may still be applied by etcd later: a
// proposal stuck on the way to etcd's leader. The fence lets it through
// (same node, same epoch). It must not overwrite what the reloaded active
// wrote since: here a later SET of the same key, acknowledged, that a
// failover must keep. In both layouts.
func TestPackedLateCommitAfterReload(t *testing.T) {
	srv := storetest.StartEtcd(t)
	for _, ready := range []bool{true, false} {
		t.Run(fmt.Sprint("ready=", ready), func(t *testing.T) {
			e := newPackedEnv(t, srv.Addr)
			a, b := e.node("a", ready), e.node("b", ready)
			a.promote()
			a.write("k", "v0")
			// The commit of k=old is sent; its outcome is unknown.
			late, _, _, err := a.l.commitTxn(e.ctx, a.name, a.epoch, []ha.SessionRecord{{Key: "k", Value: []byte("old")}})
			if err != nil {
				t.Fatal(err)
			}
			// The session store fails the write and reloads as the active
			// at the same epoch, then takes k=new.
			if _, _, err := a.l.LoadSessionsAsActive(e.ctx, a.name, a.epoch); err != nil {
				t.Fatal(err)
			}
			a.write("k", "new")
			// The old commit arrives.
			if _, err := late.Commit(); err != nil {
				t.Fatal(err)
			}
			a.resign()
			b.promote()
			if got := b.load()["k"]; got != "new" {
				t.Fatalf("k after the failover: %q, want the acknowledged %q (a commit that failed before it was issued overwrote it)", got, "new")
			}
		})
	}
}

// TestCompactionBackoffAfterFailure: a compaction that fails (here the
// snapshot is damaged by hand, so its read fails every time; in practice a
// timeout or an etcd error on a large store) is not started again by every
// next commit: each attempt reads the whole store.
func TestCompactionBackoffAfterFailure(t *testing.T) {
	srv := storetest.StartEtcd(t)
	e := newPackedEnv(t, srv.Addr)
	a := e.node("a", true)
	a.promote()
	a.fill(10)
	if err := a.l.Compact(e.ctx, a.name, a.epoch); err != nil {
		t.Fatal(err)
	}
	v, err := a.l.read(e.ctx, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.s.cli.Put(e.ctx, fmt.Sprintf("%s%08d", a.l.genPrefix(v.cur.Gen), 0), "damaged"); err != nil {
		t.Fatal(err)
	}
	a.l.opts.CompactBytes = 100
	for i := 0; i < 60; i++ {
		a.write(fmt.Sprintf("k%02d", i%20), "v")
		a.l.bg.Wait() // the compaction it started, if any, is over
	}
	if n := a.l.compactStarts.Load(); n > 2 {
		t.Fatalf("%d compactions started by 60 commits while every one fails (%v)", n, a.l.lastErr)
	}
}
