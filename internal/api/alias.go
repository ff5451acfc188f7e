package api

import "context"

// Aliaser keeps the names operators give nodes in the coordination store,
// where every agent sees them; Status then carries them in NodeView.Alias.
type Aliaser interface {
	// AliasesShared reports whether the store keeps aliases. When it does
	// not, the dashboard keeps them itself, on its own node only.
	AliasesShared() bool
	// SetAlias names node; "" removes its alias.
	SetAlias(ctx context.Context, node, alias string) error
}
