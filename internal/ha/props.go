package ha

import "context"

// NodeProps are what operators say about a node, as opposed to what its
// agent reports: today its alias. They outlive the agent (no session), so a
// node that is down keeps its alias.
type NodeProps struct {
	Alias string `json:"alias,omitempty"`
}

// Zero reports whether p says nothing, in which case stores delete it.
func (p NodeProps) Zero() bool { return p == NodeProps{} }

// Properties is what a store implements to keep node properties where every
// agent sees them; its Watch snapshots then carry them in Snapshot.Props.
// A store without it leaves aliases to each dashboard.
type Properties interface {
	// SetProps replaces node's properties; zero props remove them.
	SetProps(ctx context.Context, node string, p NodeProps) error
}
