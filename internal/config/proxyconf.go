package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/proxy"
	"go.yaml.in/yaml/v3"
)

// Proxy configures haven's proxy (`proxy:`): the proxy's own Settings,
// which config fills from the proxy: section.
type Proxy = proxy.Settings

// ProxyTLS is the certificate the proxy presents.
type ProxyTLS = proxy.TLS

// BackendTLS configures TLS from the proxy to the backends.
type BackendTLS = proxy.BackendTLS

// Sticky configures session affinity.
type Sticky = proxy.Sticky

// ProxyLimits bound what one client may send and how long it may idle.
type ProxyLimits = proxy.Limits

// minStickyKey is the shortest HMAC secret for sticky cookies, in bytes.
const minStickyKey = 16

var (
	proxyKeys      = []string{"listen", "metrics_listen", "mode", "hold_timeout", "hold_queue", "retries", "probe_interval", "drain_grace", "tls", "backend_tls", "sticky", "limits", "access_log", "standalone"}
	proxyTLSKeys   = []string{"cert", "key"}
	backendTLSKeys = []string{"enabled", "ca_file", "server_name"}
	stickyKeys     = []string{"mode", "cookie", "header", "key", "key_file"}
	limitsKeys     = []string{"max_header_bytes", "max_body_bytes", "read_header_timeout", "idle_timeout"}

	cookieName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
	headerName = cookieName
	sizeRe     = regexp.MustCompile(`^(\d+)\s*(|B|KB|KiB|MB|MiB|GB|GiB)$`)
)

// ProxyDefaults returns the proxy settings used for every field a `proxy:`
// section leaves out (proxy.Defaults).
func ProxyDefaults() Proxy { return proxy.Defaults() }

func (b *builder) proxy(f fields) {
	n, ok := f["proxy"]
	if !ok {
		return
	}
	p := ProxyDefaults()
	pf := b.mapping(n, "proxy", proxyKeys)
	if pf == nil {
		return
	}
	if v, ok := pf["standalone"]; ok {
		p.Standalone, _ = b.boolean(v, "proxy.standalone")
	}
	if p.Standalone {
		if v, ok := pf["listen"]; ok {
			p.Listen = b.listenAddr(v, "proxy.listen")
		}
	} else if v := b.required(pf, "proxy", "listen", "say where the proxy takes client traffic, e.g. listen: 0.0.0.0:8080 (or set standalone: true and give `haven proxy --listen`)"); v != nil {
		p.Listen = b.listenAddr(v, "proxy.listen")
	}
	if v, ok := pf["metrics_listen"]; ok {
		p.MetricsListen = b.listenAddr(v, "proxy.metrics_listen")
	}
	if v, ok := pf["mode"]; ok {
		if s, ok := b.oneOf(v, "proxy.mode", string(proxy.ProtocolHTTP), string(proxy.ProtocolTCP)); ok {
			p.Mode = proxy.Protocol(s)
		}
	}
	durations := []struct {
		key string
		dst *time.Duration
	}{
		{"hold_timeout", &p.HoldTimeout},
		{"probe_interval", &p.ProbeInterval},
		{"drain_grace", &p.DrainGrace},
	}
	for _, d := range durations {
		if v, ok := pf[d.key]; ok {
			if x, ok := b.duration(v, "proxy."+d.key); ok {
				*d.dst = x
			}
		}
	}
	if v, ok := pf["hold_queue"]; ok {
		if x, ok := b.integer(v, "proxy.hold_queue", 0, 1000000); ok {
			p.HoldQueue = x
		}
	}
	if v, ok := pf["retries"]; ok {
		if x, ok := b.integer(v, "proxy.retries", 0, 10); ok {
			p.Retries = x
		}
	}
	if v, ok := pf["probe_interval"]; ok && p.ProbeInterval < 5*time.Millisecond {
		b.add(v.Line, "proxy.probe_interval", "%s is too short; use at least 5ms (100ms is plenty: failover does not wait for it)", p.ProbeInterval)
	}
	if v, ok := pf["access_log"]; ok {
		p.AccessLog, _ = b.boolean(v, "proxy.access_log")
	}
	if v, ok := pf["tls"]; ok {
		tf := b.mapping(v, "proxy.tls", proxyTLSKeys)
		if tf != nil {
			if c := b.required(tf, "proxy.tls", "cert", "give the PEM certificate file, e.g. cert: /etc/haven/proxy.crt"); c != nil {
				p.TLS.Cert = b.path(c, "proxy.tls.cert")
			}
			if k := b.required(tf, "proxy.tls", "key", "give the PEM private key file, e.g. key: /etc/haven/proxy.key"); k != nil {
				p.TLS.Key = b.path(k, "proxy.tls.key")
			}
		}
	}
	if v, ok := pf["backend_tls"]; ok {
		tf := b.mapping(v, "proxy.backend_tls", backendTLSKeys)
		if x, ok := tf["enabled"]; ok {
			p.BackendTLS.Enabled, _ = b.boolean(x, "proxy.backend_tls.enabled")
		}
		if x, ok := tf["ca_file"]; ok {
			p.BackendTLS.CAFile = b.path(x, "proxy.backend_tls.ca_file")
		}
		if x, ok := tf["server_name"]; ok {
			p.BackendTLS.ServerName, _ = b.str(x, "proxy.backend_tls.server_name")
		}
	}
	if v, ok := pf["sticky"]; ok {
		b.sticky(v, &p)
	}
	if v, ok := pf["limits"]; ok {
		b.limits(v, &p.Limits)
	}
	b.c.Proxy = p
	b.proxyBackends(b.lineFor("proxy"))
}

// listenAddr checks a host:port to listen on; the host may be empty (all
// interfaces) and ${VAR}s are checked once expanded.
func (b *builder) listenAddr(n *yaml.Node, field string) string {
	s, ok := b.str(n, field)
	if !ok || strings.Contains(s, "$") {
		return s
	}
	if err := checkListen(s); err != nil {
		b.add(n.Line, field, "invalid address %q: %v; write it as host:port, e.g. 0.0.0.0:8080, or ${VAR}", s, err)
	}
	return s
}

// checkListen accepts host:port and :port.
func checkListen(s string) error {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return fmt.Errorf("not host:port")
	}
	if p, err := strconv.Atoi(s[i+1:]); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("the port %q is not a number from 1 to 65535", s[i+1:])
	}
	return nil
}

// path returns a file path, resolved against the config file's directory.
func (b *builder) path(n *yaml.Node, field string) string {
	s, ok := b.str(n, field)
	if !ok {
		return ""
	}
	if strings.TrimSpace(s) == "" {
		b.add(n.Line, field, "is empty; give a file path")
		return ""
	}
	return b.resolve(s)
}

func (b *builder) sticky(n *yaml.Node, p *Proxy) {
	s := &p.Sticky
	sf := b.mapping(n, "proxy.sticky", stickyKeys)
	if sf == nil {
		return
	}
	if v, ok := sf["mode"]; ok {
		if x, ok := b.oneOf(v, "proxy.sticky.mode", string(proxy.AffinityNone), string(proxy.AffinityCookie), string(proxy.AffinityHeader), string(proxy.AffinitySource)); ok {
			s.Mode = proxy.Affinity(x)
		}
	}
	if v, ok := sf["cookie"]; ok {
		if x, ok := b.str(v, "proxy.sticky.cookie"); ok {
			if cookieName.MatchString(x) {
				s.Cookie = x
			} else {
				b.add(v.Line, "proxy.sticky.cookie", "invalid cookie name %q; use letters, digits, '-' or '_'", x)
			}
		}
	}
	if v, ok := sf["header"]; ok {
		if x, ok := b.str(v, "proxy.sticky.header"); ok {
			if headerName.MatchString(x) {
				s.Header = x
			} else {
				b.add(v.Line, "proxy.sticky.header", "invalid header name %q", x)
			}
		}
	}
	keyLine := b.lineFor("proxy.sticky")
	if v, ok := sf["key"]; ok {
		keyLine = v.Line
		if x, ok := b.str(v, "proxy.sticky.key"); ok {
			if len(x) < minStickyKey {
				b.add(v.Line, "proxy.sticky.key", "is %d bytes; use a random secret of at least %d bytes (e.g. from `openssl rand -base64 32`)", len(x), minStickyKey)
			}
			s.Key = x
		}
	}
	if v, ok := sf["key_file"]; ok {
		if _, both := sf["key"]; both {
			b.add(v.Line, "proxy.sticky.key_file", "set either key or key_file, not both")
		}
		s.KeyFile = b.path(v, "proxy.sticky.key_file")
	}
	switch s.Mode {
	case proxy.AffinityCookie:
		if s.Key == "" && s.KeyFile == "" {
			b.add(keyLine, "proxy.sticky", "sticky mode cookie signs its cookie: add key: (a secret of at least %d bytes) or key_file:", minStickyKey)
		}
		if p.Mode == proxy.ProtocolTCP {
			b.add(b.lineFor("proxy.sticky.mode"), "proxy.sticky.mode", "cookie affinity needs HTTP; in mode tcp use sticky mode source or none")
		}
	case proxy.AffinityHeader:
		if s.Header == "" {
			b.add(b.lineFor("proxy.sticky.mode"), "proxy.sticky.header", "missing; sticky mode header hashes a header: add header: NAME, e.g. header: X-Session")
		}
		if p.Mode == proxy.ProtocolTCP {
			b.add(b.lineFor("proxy.sticky.mode"), "proxy.sticky.mode", "header affinity needs HTTP; in mode tcp use sticky mode source or none")
		}
	}
}

func (b *builder) limits(n *yaml.Node, l *ProxyLimits) {
	lf := b.mapping(n, "proxy.limits", limitsKeys)
	if v, ok := lf["max_header_bytes"]; ok {
		if x, ok := b.size(v, "proxy.limits.max_header_bytes", 1<<10, 16<<20); ok {
			l.MaxHeaderBytes = int(x)
		}
	}
	if v, ok := lf["max_body_bytes"]; ok {
		if x, ok := b.size(v, "proxy.limits.max_body_bytes", 0, 1<<40); ok {
			l.MaxBodyBytes = x
		}
	}
	if v, ok := lf["read_header_timeout"]; ok {
		if d, ok := b.duration(v, "proxy.limits.read_header_timeout"); ok {
			l.ReadHeaderTimeout = d
		}
	}
	if v, ok := lf["idle_timeout"]; ok {
		if d, ok := b.duration(v, "proxy.limits.idle_timeout"); ok {
			l.IdleTimeout = d
		}
	}
}

// size reads a byte count: a whole number, or one with a unit (KiB, MiB,
// GiB, KB, MB, GB).
func (b *builder) size(n *yaml.Node, field string, lo, hi int64) (int64, bool) {
	s, ok := b.str(n, field)
	if !ok {
		return 0, false
	}
	m := sizeRe.FindStringSubmatch(strings.TrimSpace(s))
	bad := func() (int64, bool) {
		b.add(n.Line, field, "invalid size %q; give bytes between %d and %d, e.g. 65536 or 64KiB", s, lo, hi)
		return 0, false
	}
	if m == nil {
		return bad()
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return bad()
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1000, "KiB": 1 << 10, "MB": 1000 * 1000, "MiB": 1 << 20, "GB": 1000 * 1000 * 1000, "GiB": 1 << 30}[m[2]]
	if v > hi/mult || v*mult < lo || v*mult > hi {
		return bad()
	}
	return v * mult, true
}

// proxyBackends requires a backend on every node that serves, since the
// proxy has nowhere else to send its traffic.
func (b *builder) proxyBackends(line int) {
	for i, n := range b.c.Nodes {
		if n.Witness || n.Backend != "" {
			continue
		}
		field := indexField("nodes", i) + ".backend"
		b.add(n.Line, field, "missing; the proxy sends node %s's traffic to its backend: add backend: host:port (where its service listens, e.g. backend: 10.0.0.1:5000) or remove proxy: (line %d)", n.Name, line)
	}
}
