package config

// Proxy configures haven's proxy (`proxy:`). Listen empty means no proxy.
type Proxy struct {
	Listen string
}

func (b *builder) proxy(f fields) {
	n, ok := f["proxy"]
	if !ok {
		return
	}
	pf := b.mapping(n, "proxy", []string{"listen"})
	if v, ok := pf["listen"]; ok {
		b.c.Proxy.Listen, _ = b.str(v, "proxy.listen")
	}
}
