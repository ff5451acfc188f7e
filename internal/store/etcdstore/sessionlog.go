package etcdstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/ha"
)

// The active-passive session store's packed layout (docs/sessions.md, "The
// packed layout"): each group commit is one etcd key,
// /haven-sessions-log/<cluster>/log/<epoch>-<n>, holding the batch's
// records, written behind the fence. The log is read in revision order.
//
// SPIKE: no snapshot or compaction yet; measured to decide whether the
// layout reaches the SET target before it is finished.

// SessionLog is the session store's data in the packed layout, for
// active-passive (one writer, fenced by the epoch). Active-active keeps one
// key per session (Store's own ha.SessionData methods): it needs per-key
// revisions.
type SessionLog struct {
	s *Store
	n atomic.Uint64 // entries this process wrote (unique within an epoch)
}

// SessionLog returns the packed layout of s's session store.
func (s *Store) SessionLog() *SessionLog { return &SessionLog{s: s} }

func (l *SessionLog) prefix() string {
	return "/haven-sessions-log/" + strings.TrimPrefix(l.s.prefix, "/haven/")
}
func (l *SessionLog) logPrefix() string { return l.prefix() + "log/" }

// encodeBatch packs recs: for each, uvarint key length, key, a flags byte
// (1 deleted, 2 hash), the expiry (8 bytes big-endian), uvarint value
// length, value.
func encodeBatch(recs []ha.SessionRecord) []byte {
	n := 0
	for _, r := range recs {
		n += len(r.Key) + len(r.Value) + 2*binary.MaxVarintLen32 + 9
	}
	b := make([]byte, 0, n)
	for _, r := range recs {
		b = binary.AppendUvarint(b, uint64(len(r.Key)))
		b = append(b, r.Key...)
		var f byte
		if r.Deleted {
			f |= 1
		}
		if r.Hash {
			f |= 2
		}
		b = append(b, f)
		b = binary.BigEndian.AppendUint64(b, uint64(r.ExpireAt))
		if r.Deleted {
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(r.Value)))
		b = append(b, r.Value...)
	}
	return b
}

var errBadBatch = errors.New("not a session log entry (someone wrote under /haven-sessions-log/ by hand?)")

func decodeBatch(b []byte, rev int64) ([]ha.SessionRecord, error) {
	var out []ha.SessionRecord
	for len(b) > 0 {
		kl, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < kl+9 {
			return nil, errBadBatch
		}
		b = b[n:]
		r := ha.SessionRecord{Key: string(b[:kl]), Rev: rev}
		b = b[kl:]
		f := b[0]
		if f > 3 {
			return nil, errBadBatch
		}
		r.Deleted, r.Hash = f&1 != 0, f&2 != 0
		r.ExpireAt = int64(binary.BigEndian.Uint64(b[1:9]))
		b = b[9:]
		if !r.Deleted {
			vl, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < vl {
				return nil, errBadBatch
			}
			r.Value = b[n : n+int(vl) : n+int(vl)]
			b = b[n+int(vl):]
		}
		out = append(out, r)
	}
	return out, nil
}

// CommitSessions writes recs as one log entry that commits only while node
// holds the active role at epoch. A retry writes the same entry again: the
// same records, so applying it twice is applying it once.
func (l *SessionLog) CommitSessions(ctx context.Context, node string, epoch ha.Epoch, recs []ha.SessionRecord) (int64, error) {
	key := fmt.Sprintf("%s%016x-%016x", l.logPrefix(), uint64(epoch), l.n.Add(1))
	resp, err := l.s.cli.Txn(ctx).If(l.s.fence(node, epoch)...).Then(clientv3.OpPut(key, string(encodeBatch(recs)))).Commit()
	if err != nil {
		return 0, fmt.Errorf("commit %d session keys at epoch %d: %w", len(recs), epoch, err)
	}
	if !resp.Succeeded {
		return 0, ha.ErrNotLeader
	}
	return resp.Header.Revision, nil
}

// LoadSessions reads the log at one revision and folds it, in revision
// order, into the records it leaves.
func (l *SessionLog) LoadSessions(ctx context.Context) ([]ha.SessionRecord, int64, error) {
	p := l.logPrefix()
	end := clientv3.GetPrefixRangeEnd(p)
	type ent struct {
		rev int64
		val []byte
	}
	var ents []ent
	var rev int64
	from := p
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := l.s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, fmt.Errorf("load the session store: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			ents = append(ents, ent{kv.ModRevision, kv.Value})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].rev < ents[j].rev })
	m := map[string]ha.SessionRecord{}
	for _, e := range ents {
		recs, err := decodeBatch(e.val, e.rev)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range recs {
			if r.Deleted {
				delete(m, r.Key)
			} else {
				m[r.Key] = r
			}
		}
	}
	out := make([]ha.SessionRecord, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	return out, rev, nil
}

// WatchSessions calls fn with each log entry written after rev.
func (l *SessionLog) WatchSessions(ctx context.Context, rev int64, fn func([]ha.SessionRecord)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range l.s.cli.Watch(wctx, l.logPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithFilterDelete()) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch the session store: %w", err)
		}
		for _, ev := range wr.Events {
			recs, err := decodeBatch(ev.Kv.Value, ev.Kv.ModRevision)
			if err != nil {
				return err
			}
			if len(recs) > 0 {
				fn(recs)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("the watch of the session store closed")
}

var errPackedAA = errors.New("the packed session layout is for active-passive; active-active keeps one key per session")

// CommitSessionsIf is active-active's: not in this layout.
func (l *SessionLog) CommitSessionsIf(context.Context, []ha.SessionRecord, map[string]int64) (int64, bool, error) {
	return 0, false, errPackedAA
}

// GetSessions is active-active's: not in this layout.
func (l *SessionLog) GetSessions(context.Context, []string) ([]ha.SessionRecord, error) {
	return nil, errPackedAA
}

var _ ha.SessionData = (*SessionLog)(nil)

// Stats reports the layout in use and the log's and snapshot's sizes.
func (l *SessionLog) Stats() ha.SessionLogStats {
	return ha.SessionLogStats{Layout: "packed"}
}
