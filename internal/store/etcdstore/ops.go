package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/ha"
)

// pruneEvery: the history is pruned on one append in this many (by
// revision, so that a long run of appends always prunes).
const pruneEvery = 50

func (s *Store) maintenanceKey(node string) string { return s.prefix + "intents/maintenance/" + node }
func (s *Store) switchoverKey() string             { return s.prefix + "intents/switchover" }
func (s *Store) eventsPrefix() string              { return s.prefix + "events/" }

// SetMaintenance turns maintenance on or off for node.
func (s *Store) SetMaintenance(ctx context.Context, node string, on bool) error {
	var err error
	if on {
		_, err = s.cli.Put(ctx, s.maintenanceKey(node), "on")
	} else {
		_, err = s.cli.Delete(ctx, s.maintenanceKey(node))
	}
	if err != nil {
		return fmt.Errorf("set maintenance of %s: %w", node, err)
	}
	return nil
}

// RequestSwitchover records sw, leased until its deadline, unless one is
// already pending.
func (s *Store) RequestSwitchover(ctx context.Context, sw ha.Switchover) error {
	b, err := json.Marshal(sw)
	if err != nil {
		return err
	}
	ttl := int64(time.Until(sw.Deadline)/time.Second) + 1
	lease, err := s.cli.Grant(ctx, max(ttl, 1))
	if err != nil {
		return fmt.Errorf("request switchover: %w", err)
	}
	k, lk := s.switchoverKey(), s.leaderKey()
	// The leader the switchover is from must still hold the key, at its
	// epoch (the key's CreateRevision), or the key must be vacant for a
	// switchover from nobody: checked in the same transaction.
	leaderIs := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(lk), "=", 0)}
	if sw.From != "" {
		leaderIs = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(lk), "=", int64(sw.Epoch)),
			clientv3.Compare(clientv3.Value(lk), "=", sw.From)}
	}
	resp, err := s.cli.Txn(ctx).
		If(append([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), "=", 0)}, leaderIs...)...).
		Then(clientv3.OpPut(k, string(b), clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(k), clientv3.OpGet(lk)).
		Commit()
	if err != nil {
		return fmt.Errorf("request switchover: %w", err)
	}
	if !resp.Succeeded {
		_, _ = s.cli.Revoke(ctx, lease.ID)
		if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
			return ha.ErrBusy
		}
		now := "nobody"
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) == 1 {
			now = fmt.Sprintf("%s at epoch %d", kvs[0].Value, kvs[0].CreateRevision)
		}
		return fmt.Errorf("%w: the switchover is from %q at epoch %d, the store has %s", ha.ErrStale, sw.From, sw.Epoch, now)
	}
	return nil
}

// ClearSwitchover removes the pending switchover if its ID is id.
func (s *Store) ClearSwitchover(ctx context.Context, id string) error {
	k := s.switchoverKey()
	resp, err := s.cli.Get(ctx, k)
	if err != nil {
		return fmt.Errorf("clear switchover: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	var sw ha.Switchover
	if json.Unmarshal(resp.Kvs[0].Value, &sw) != nil || sw.ID != id {
		return nil
	}
	_, err = s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)).
		Then(clientv3.OpDelete(k)).
		Commit()
	if err != nil {
		return fmt.Errorf("clear switchover: %w", err)
	}
	return nil
}

// AppendEvent adds ev to the history, pruning it now and then.
func (s *Store) AppendEvent(ctx context.Context, ev ha.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	key := fmt.Sprintf("%s%020d-%s", s.eventsPrefix(), ev.Time.UnixNano(), ev.Node)
	resp, err := s.cli.Put(ctx, key, string(b))
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	if resp.Header.Revision%pruneEvery == 0 {
		s.pruneEvents(ctx)
	}
	return nil
}

func (s *Store) pruneEvents(ctx context.Context) {
	p := s.eventsPrefix()
	resp, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count <= ha.MaxEvents {
		return
	}
	old, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(resp.Count-ha.MaxEvents))
	if err != nil || len(old.Kvs) == 0 {
		return
	}
	last := string(old.Kvs[len(old.Kvs)-1].Key)
	_, _ = s.cli.Delete(ctx, p, clientv3.WithRange(last+"\x00"))
}

// Events returns the newest limit events, oldest first.
func (s *Store) Events(ctx context.Context, limit int) ([]ha.Event, error) {
	resp, err := s.cli.Get(ctx, s.eventsPrefix(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	out := make([]ha.Event, 0, len(resp.Kvs))
	for i := len(resp.Kvs) - 1; i >= 0; i-- {
		var ev ha.Event
		if json.Unmarshal(resp.Kvs[i].Value, &ev) == nil {
			out = append(out, ev)
		}
	}
	return out, nil
}

var _ ha.Store = (*Store)(nil)
