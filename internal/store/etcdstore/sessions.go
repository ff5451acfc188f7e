package etcdstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/ha"
)

// The session store (package sessions) keeps each key under
// /haven-sessions/<cluster>/<key>, outside the agents' prefix so that their
// watch never carries session traffic. A value is its expiry (Unix ms, 8
// bytes big-endian, 0: never) followed by the data. Writes are batches,
// each one transaction fenced like FencedPut.

func (s *Store) sessPrefix() string {
	return "/haven-sessions/" + strings.TrimPrefix(s.prefix, "/haven/")
}

func encodeSession(r ha.SessionRecord) string {
	b := make([]byte, 9+len(r.Value))
	binary.BigEndian.PutUint64(b, uint64(r.ExpireAt))
	if r.Hash {
		b[8] = 1
	}
	copy(b[9:], r.Value)
	return string(b)
}

func decodeSession(key string, v []byte) (ha.SessionRecord, error) {
	if len(v) < 9 || v[8] > 1 {
		return ha.SessionRecord{}, fmt.Errorf("session key %q holds %d bytes, not a session record (someone wrote under /haven-sessions/ by hand?)", key, len(v))
	}
	return ha.SessionRecord{Key: key, ExpireAt: int64(binary.BigEndian.Uint64(v)), Hash: v[8] == 1, Value: v[9:]}, nil
}

const loadPage = 10000

// LoadSessions reads every session record at one revision, a page at a
// time: active-active's load. If the session store has moved to the packed
// layout (an active-passive cluster's migration), the per-key keys are not
// its data: it says so instead of loading an empty or partial store.
func (s *Store) LoadSessions(ctx context.Context) ([]ha.SessionRecord, int64, error) {
	resp, err := s.cli.Get(ctx, s.sessCurrentKey(), clientv3.WithCountOnly())
	if err != nil {
		return nil, 0, fmt.Errorf("load the session store: %w", err)
	}
	if resp.Count > 0 {
		return nil, 0, ErrSessionsPacked
	}
	return s.loadSessionsAt(ctx, resp.Header.Revision)
}

// ErrSessionsPacked: one key per session was asked for (active-active)
// where the session store has moved to the packed layout.
var ErrSessionsPacked = errors.New("the session store is in active-passive's packed layout (docs/sessions.md), which active-active cannot read: go back to mode active-passive, or move the sessions by hand")

// loadSessionsAt reads every session record at revision rev (0: now).
func (s *Store) loadSessionsAt(ctx context.Context, rev int64) ([]ha.SessionRecord, int64, error) {
	p := s.sessPrefix()
	end := clientv3.GetPrefixRangeEnd(p)
	var out []ha.SessionRecord
	from := p
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, fmt.Errorf("load the session store: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			r, err := decodeSession(strings.TrimPrefix(string(kv.Key), p), kv.Value)
			if err != nil {
				return nil, 0, err
			}
			r.Rev = kv.ModRevision
			out = append(out, r)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// WatchSessions calls fn with each change after rev until ctx ends or the
// watch fails (a member cut off from its quorum ends it: WithRequireLeader).
func (s *Store) WatchSessions(ctx context.Context, rev int64, fn func([]ha.SessionRecord)) error {
	p := s.sessPrefix()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range s.cli.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch the session store: %w", err)
		}
		recs := make([]ha.SessionRecord, 0, len(wr.Events))
		for _, ev := range wr.Events {
			r, err := sessionEvent(strings.TrimPrefix(string(ev.Kv.Key), p), ev)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		if len(recs) > 0 {
			fn(recs)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("the watch of the session store closed")
}

// sessionEvent is the record of a watch event on the session key key: its
// new value, or its removal, at the event's revision.
func sessionEvent(key string, ev *clientv3.Event) (ha.SessionRecord, error) {
	if ev.Type == clientv3.EventTypeDelete {
		return ha.SessionRecord{Key: key, Deleted: true, Rev: ev.Kv.ModRevision}, nil
	}
	r, err := decodeSession(key, ev.Kv.Value)
	if err != nil {
		return r, err
	}
	r.Rev = ev.Kv.ModRevision
	return r, nil
}

// CommitSessions writes recs in one transaction that commits only while
// node holds the active role at epoch.
func (s *Store) CommitSessions(ctx context.Context, node string, epoch ha.Epoch, recs []ha.SessionRecord) (int64, error) {
	resp, err := s.cli.Txn(ctx).If(s.fence(node, epoch)...).Then(s.sessionOps(recs)...).Commit()
	if err != nil {
		return 0, fmt.Errorf("commit %d session keys at epoch %d: %w", len(recs), epoch, err)
	}
	if !resp.Succeeded {
		return 0, ha.ErrNotLeader
	}
	return resp.Header.Revision, nil
}

func (s *Store) sessionOps(recs []ha.SessionRecord) []clientv3.Op {
	p := s.sessPrefix()
	ops := make([]clientv3.Op, 0, len(recs))
	for _, r := range recs {
		if r.Deleted {
			ops = append(ops, clientv3.OpDelete(p+r.Key))
		} else {
			ops = append(ops, clientv3.OpPut(p+r.Key, encodeSession(r)))
		}
	}
	return ops
}

// CommitSessionsIf writes recs in one transaction if every key of expect
// is at that revision (0: absent): active-active's compare-and-swap. It
// also requires the session store not to be in the packed layout (an
// active-passive active's migration, while the cluster changes mode):
// the migration deletes the per-key keys, so a write there would be lost.
// That compare makes len(expect)+1 of etcd's 128 per transaction, so
// expect holds at most 127 keys (MaxCompareKeys).
func (s *Store) CommitSessionsIf(ctx context.Context, recs []ha.SessionRecord, expect map[string]int64) (int64, bool, error) {
	p := s.sessPrefix()
	cmps := make([]clientv3.Cmp, 0, len(expect)+1)
	for k, rev := range expect {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p+k), "=", rev))
	}
	cur := s.sessCurrentKey()
	cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(cur), "=", 0))
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(s.sessionOps(recs)...).Else(clientv3.OpGet(cur, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return 0, false, fmt.Errorf("commit %d session keys: %w", len(recs), err)
	}
	if !resp.Succeeded && len(resp.Responses) == 1 && resp.Responses[0].GetResponseRange().GetCount() > 0 {
		return 0, false, ErrSessionsPacked
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

// MaxCompareKeys: the most keys CommitSessionsIf compares in one call.
const MaxCompareKeys = 127

// GetSessions reads keys in one linearizable transaction.
func (s *Store) GetSessions(ctx context.Context, keys []string) ([]ha.SessionRecord, error) {
	p := s.sessPrefix()
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(p + k)
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("read %d session keys: %w", len(keys), err)
	}
	out := make([]ha.SessionRecord, len(keys))
	for i, k := range keys {
		kvs := resp.Responses[i].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			out[i] = ha.SessionRecord{Key: k, Deleted: true, Rev: resp.Header.Revision}
			continue
		}
		r, err := decodeSession(k, kvs[0].Value)
		if err != nil {
			return nil, err
		}
		r.Rev = kvs[0].ModRevision
		out[i] = r
	}
	return out, nil
}

var _ ha.SessionData = (*Store)(nil)
