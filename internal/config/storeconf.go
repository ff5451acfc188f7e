package config

// Store configures the coordination store (`store:`). The zero value is the
// embedded etcd that every agent runs.
type Store struct {
	Backend string // "embedded" (default)
}

func (b *builder) store(f fields) {
	b.c.Store.Backend = "embedded"
	n, ok := f["store"]
	if !ok {
		return
	}
	sf := b.mapping(n, "store", []string{"backend"})
	if v, ok := sf["backend"]; ok {
		if s, ok := b.oneOf(v, "store.backend", "embedded"); ok {
			b.c.Store.Backend = s
		}
	}
}
