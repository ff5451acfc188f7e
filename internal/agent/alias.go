package agent

import (
	"context"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// AliasesShared reports whether the store keeps node properties, so that an
// alias set on one node's dashboard shows on every node's.
func (a *Agent) AliasesShared() bool {
	_, ok := a.store.(ha.Properties)
	return ok
}

// SetAlias records node's alias in the store; "" removes it. The caller
// (the dashboard) has checked the user and the alias's form.
func (a *Agent) SetAlias(ctx context.Context, node, alias string) error {
	ps, ok := a.store.(ha.Properties)
	if !ok {
		return ha.Errorf(ha.KindConflict, "this store backend keeps no node properties, so aliases cannot be shared")
	}
	if _, known := a.cfg.NodeByName(node); !known {
		if _, up := a.Snapshot().Nodes[node]; !up {
			return ha.Errorf(ha.KindNotFound, "no node %q in the configuration; members: %s", node, a.memberNames())
		}
	}
	props := a.Snapshot().Props[node]
	props.Alias = alias
	cctx, cancel := clock.WithTimeout(ctx, a.clk, opTimeout(a.cfg.Timing))
	defer cancel()
	if err := ps.SetProps(cctx, node, props); err != nil {
		return ha.Wrap(ha.KindUnavailable, err, "record the alias of %s in the store", node)
	}
	return nil
}

var _ api.Aliaser = (*Agent)(nil)
