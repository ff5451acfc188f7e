package config

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// proxyNodes is a valid cluster with backends; proxy cases append from line 15.
const proxyNodes = `cluster: demo
data_dir: /var/lib/haven
nodes:
  - name: n1
    api: 127.0.0.1:7101
    peer: 127.0.0.1:7201
    client: 127.0.0.1:7301
    backend: 127.0.0.1:8101
  - name: n2
    api: 127.0.0.1:7102
    peer: 127.0.0.1:7202
    client: 127.0.0.1:7302
    backend: 127.0.0.1:8102
  - {name: w1, witness: true, peer: 127.0.0.1:7203, client: 127.0.0.1:7303}
`

func TestProxyAbsent(t *testing.T) {
	c := mustParse(t, "/etc/haven.yaml", proxyNodes)
	if !reflect.DeepEqual(c.Proxy, Proxy{}) {
		t.Fatalf("no proxy section, got %+v", c.Proxy)
	}
}

func TestProxyDefaults(t *testing.T) {
	c := mustParse(t, "/etc/haven.yaml", proxyNodes+"proxy: {listen: '${PROXY_ADDR}'}\n")
	want := ProxyDefaults()
	want.Listen = "${PROXY_ADDR}"
	if !reflect.DeepEqual(c.Proxy, want) {
		t.Fatalf("got  %+v\nwant %+v", c.Proxy, want)
	}
	if want.HoldTimeout != 5*time.Second || want.HoldQueue != 10000 || want.Retries != 3 ||
		want.ProbeInterval != 100*ms || want.Sticky.Cookie != "HAVEN_AFFINITY" || want.Limits.MaxHeaderBytes != 64<<10 ||
		want.Limits.MaxBodyBytes != 10<<20 || want.Mode != "http" || want.Sticky.Mode != "none" {
		t.Fatalf("defaults differ from the documented ones: %+v", want)
	}
}

func TestProxyFull(t *testing.T) {
	text := proxyNodes + `proxy:
  listen: 0.0.0.0:8443
  metrics_listen: 127.0.0.1:9100
  mode: http
  hold_timeout: 2s
  hold_queue: 50
  retries: 5
  probe_interval: 50ms
  drain_grace: 1s
  tls: {cert: certs/proxy.crt, key: /etc/haven/proxy.key}
  backend_tls: {enabled: true, ca_file: ca.pem, server_name: svc.internal}
  sticky: {mode: cookie, cookie: SID, key: 0123456789abcdef0123}
  limits: {max_header_bytes: 32KiB, max_body_bytes: 1MiB, read_header_timeout: 3s, idle_timeout: 30s}
  access_log: true
`
	c := mustParse(t, "/etc/haven/haven.yaml", text)
	want := Proxy{
		Listen: "0.0.0.0:8443", MetricsListen: "127.0.0.1:9100", Mode: "http",
		HoldTimeout: 2 * time.Second, HoldQueue: 50, Retries: 5, ProbeInterval: 50 * ms, DrainGrace: time.Second,
		TLS:        ProxyTLS{Cert: filepath.FromSlash("/etc/haven/certs/proxy.crt"), Key: "/etc/haven/proxy.key"},
		BackendTLS: BackendTLS{Enabled: true, CAFile: "/etc/haven/ca.pem", ServerName: "svc.internal"},
		Sticky:     Sticky{Mode: "cookie", Cookie: "SID", Key: "0123456789abcdef0123"},
		Limits:     ProxyLimits{MaxHeaderBytes: 32 << 10, MaxBodyBytes: 1 << 20, ReadHeaderTimeout: 3 * time.Second, IdleTimeout: 30 * time.Second},
		AccessLog:  true,
	}
	if !reflect.DeepEqual(c.Proxy, want) {
		t.Fatalf("got  %+v\nwant %+v", c.Proxy, want)
	}
}

func TestProxyErrors(t *testing.T) {
	noBackend := strings.Replace(proxyNodes, "    backend: 127.0.0.1:8102\n", "", 1)
	tests := []struct {
		name   string
		text   string
		line   int
		field  string
		phrase string
	}{
		{"no listen", proxyNodes + "proxy: {mode: http}\n", 15, "proxy.listen", "missing; say where the proxy takes client traffic"},
		{"bad listen", proxyNodes + "proxy: {listen: localhost}\n", 15, "proxy.listen", "invalid address"},
		{"bad port", proxyNodes + "proxy: {listen: 'h:70000'}\n", 15, "proxy.listen", "not a number from 1 to 65535"},
		{"unknown key", proxyNodes + "proxy:\n  listen: :80\n  hold: 1s\n", 17, "proxy.hold", `unknown field "hold"; allowed: listen, metrics_listen, mode`},
		{"bad mode", proxyNodes + "proxy: {listen: ':80', mode: udp}\n", 15, "proxy.mode", `invalid value "udp"; allowed: http, tcp`},
		{"bad hold timeout", proxyNodes + "proxy: {listen: ':80', hold_timeout: soon}\n", 15, "proxy.hold_timeout", "invalid duration"},
		{"negative queue", proxyNodes + "proxy: {listen: ':80', hold_queue: -1}\n", 15, "proxy.hold_queue", "whole number between 0"},
		{"too many retries", proxyNodes + "proxy: {listen: ':80', retries: 99}\n", 15, "proxy.retries", "between 0 and 10"},
		{"probe too fast", proxyNodes + "proxy: {listen: ':80', probe_interval: 1ms}\n", 15, "proxy.probe_interval", "at least 5ms"},
		{"tls without key", proxyNodes + "proxy:\n  listen: :443\n  tls: {cert: a.pem}\n", 17, "proxy.tls.key", "missing; give the PEM private key"},
		{"short sticky key", proxyNodes + "proxy:\n  listen: :80\n  sticky: {mode: cookie, key: short}\n", 17, "proxy.sticky.key", "at least 16 bytes"},
		{"cookie without key", proxyNodes + "proxy:\n  listen: :80\n  sticky:\n    mode: cookie\n", 17, "proxy.sticky", "add key:"},
		{"key and key_file", proxyNodes + "proxy:\n  listen: :80\n  sticky:\n    mode: cookie\n    key: 0123456789abcdef\n    key_file: k\n", 20, "proxy.sticky.key_file", "not both"},
		{"header without name", proxyNodes + "proxy:\n  listen: :80\n  sticky:\n    mode: header\n", 18, "proxy.sticky.header", "add header: NAME"},
		{"cookie in tcp mode", proxyNodes + "proxy:\n  listen: :80\n  mode: tcp\n  sticky:\n    mode: cookie\n    key: 0123456789abcdef\n", 19, "proxy.sticky.mode", "needs HTTP"},
		{"bad size", proxyNodes + "proxy:\n  listen: :80\n  limits: {max_body_bytes: 10 parsecs}\n", 17, "proxy.limits.max_body_bytes", "invalid size"},
		{"header limit too small", proxyNodes + "proxy:\n  listen: :80\n  limits: {max_header_bytes: 10}\n", 17, "proxy.limits.max_header_bytes", "invalid size"},
		{"no backend", noBackend + "proxy: {listen: ':80'}\n", 9, "nodes[1].backend", "add backend: host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("haven.yaml", []byte(tt.text))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *Error, got %v", err)
			}
			for _, p := range cerr.Problems {
				if p.Line == tt.line && p.Field == tt.field && strings.Contains(p.Msg, tt.phrase) {
					return
				}
			}
			t.Fatalf("want line %d field %s containing %q; got:\n%v", tt.line, tt.field, tt.phrase, err)
		})
	}
}

func TestProxySizes(t *testing.T) {
	for in, want := range map[string]int64{"65536": 65536, "64KiB": 64 << 10, "2MB": 2000000, "1GiB": 1 << 30, "0": 0} {
		c := mustParse(t, "/h.yaml", proxyNodes+"proxy: {listen: ':80', limits: {max_body_bytes: "+in+"}}\n")
		if c.Proxy.Limits.MaxBodyBytes != want {
			t.Errorf("%s: got %d, want %d", in, c.Proxy.Limits.MaxBodyBytes, want)
		}
	}
}
