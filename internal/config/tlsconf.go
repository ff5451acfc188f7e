package config

import "strings"

// ClusterTLS is the cluster's mutual TLS (`tls:`): the embedded etcd's peer
// and client listeners, the agent API and dashboard, agent-to-agent calls
// and the CLI. The paths may hold ${NODE}, so the file stays the same on
// every node.
type ClusterTLS struct {
	CAFile, CertFile, KeyFile string
}

// Enabled reports whether the cluster runs with TLS.
func (t ClusterTLS) Enabled() bool { return t.CAFile != "" }

// TLSFiles are one party's files, with ${NODE} expanded.
type TLSFiles struct {
	CA, Cert, Key string
}

// For returns the files of node (for the CLI: "operator").
func (t ClusterTLS) For(node string) TLSFiles {
	x := func(s string) string { return strings.ReplaceAll(s, "${NODE}", node) }
	return TLSFiles{CA: x(t.CAFile), Cert: x(t.CertFile), Key: x(t.KeyFile)}
}

var tlsKeys = []string{"ca_file", "cert_file", "key_file"}

// insecureWhy is what config check says about a cluster without TLS.
const insecureWhy = "insecure: true turns TLS off: anyone who can reach a node's ports can read every key of the store, move the active role with one unauthenticated request to the etcd client port, and read API tokens, dashboard passwords and session cookies off the network. Use it only on a network you trust completely; create certificates with `haven certs init --config FILE` and add a tls: section instead"

// CheckSecure is haven's secure default, enforced by every command that
// runs a part of the cluster and by config check: a config without tls:
// is refused unless it says insecure: true.
func (c *Config) CheckSecure() error {
	if c.TLS.Enabled() || c.Insecure {
		return nil
	}
	return &Error{File: c.Path, Problems: []Problem{{Line: 0, Field: "tls", Msg: "missing: haven is secure by default and needs certificates for its listeners; run `haven certs init --config " + c.Path + "` and add the tls: section it prints, or set insecure: true to run without TLS (dangerous: see docs/security.md)"}}}
}

// InsecureWarning says why a cluster without TLS is dangerous ("" with TLS).
func (c *Config) InsecureWarning() string {
	if c.TLS.Enabled() {
		return ""
	}
	return insecureWhy
}

func (b *builder) clusterTLS(f fields) {
	c := b.c
	if n, ok := f["insecure"]; ok {
		c.Insecure, _ = b.boolean(n, "insecure")
	}
	n, ok := f["tls"]
	if !ok {
		return
	}
	tf := b.mapping(n, "tls", tlsKeys)
	if tf == nil {
		return
	}
	get := func(key, hint string) string {
		v := b.required(tf, "tls", key, hint)
		if v == nil {
			return ""
		}
		s, ok := b.str(v, "tls."+key)
		if !ok {
			return ""
		}
		if strings.TrimSpace(s) == "" {
			b.add(v.Line, "tls."+key, "is empty; give a file path")
			return ""
		}
		return b.resolve(s)
	}
	c.TLS = ClusterTLS{
		CAFile:   get("ca_file", "give the cluster CA certificate, e.g. ca_file: /etc/haven/certs/ca.crt"),
		CertFile: get("cert_file", "give each node's certificate, e.g. cert_file: /etc/haven/certs/${NODE}.crt"),
		KeyFile:  get("key_file", "give each node's key, e.g. key_file: /etc/haven/certs/${NODE}.key"),
	}
	if c.Insecure {
		b.add(b.lineFor("insecure"), "insecure", "insecure: true and a tls: section contradict each other; remove one")
	}
}

// APIURL is the base URL of an agent API at addr: https under TLS.
func (c *Config) APIURL(addr string) string {
	if c.TLS.Enabled() {
		return "https://" + addr
	}
	return "http://" + addr
}
