package etcdstore

import (
	"encoding/binary"
	"errors"
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
