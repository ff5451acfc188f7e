package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/haven-ha/haven/internal/ha"
)

// Node properties (ha.NodeProps, JSON) live at props/<name>, with no lease:
// an alias outlives the agent, so a node that is down keeps its name. The
// watch carries them in Snapshot.Props.

func (s *Store) propsPrefix() string         { return s.prefix + "props/" }
func (s *Store) propsKey(node string) string { return s.propsPrefix() + node }

// SetProps replaces node's properties; zero props delete the key.
func (s *Store) SetProps(ctx context.Context, node string, p ha.NodeProps) error {
	var err error
	if p.Zero() {
		_, err = s.cli.Delete(ctx, s.propsKey(node))
	} else {
		b, merr := json.Marshal(p)
		if merr != nil {
			return merr
		}
		_, err = s.cli.Put(ctx, s.propsKey(node), string(b))
	}
	if err != nil {
		return fmt.Errorf("set the properties of %s: %w", node, err)
	}
	return nil
}

// applyProps folds a change of a props/ key into snap. It builds a new map
// instead of changing the old one, which snapshots already sent may share
// (clone copies only the maps it knows). It reports whether key was one.
func (s *Store) applyProps(snap *ha.Snapshot, key string, val []byte, deleted bool) bool {
	name, ok := strings.CutPrefix(key, s.propsPrefix())
	if !ok {
		return false
	}
	next := make(map[string]ha.NodeProps, len(snap.Props)+1)
	maps.Copy(next, snap.Props)
	var p ha.NodeProps
	if deleted || json.Unmarshal(val, &p) != nil || p.Zero() {
		delete(next, name)
	} else {
		next[name] = p
	}
	snap.Props = next
	return true
}

var _ ha.Properties = (*Store)(nil)
