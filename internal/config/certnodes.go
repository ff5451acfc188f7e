package config

import (
	"net"

	"github.com/haven-ha/haven/internal/certs"
)

// CertNodes names the cluster and lists its nodes with the hosts of their
// addresses (api, peer, client), the names their certificates carry
// (certs.InitFor). An address without a host or on every interface stands
// for localhost.
func (c *Config) CertNodes() (string, []certs.Node) {
	var out []certs.Node
	for _, n := range c.Nodes {
		var hosts []string
		for _, a := range []string{n.API, n.Peer, n.Client} {
			if h, _, err := net.SplitHostPort(a); err == nil {
				if h == "" || h == "0.0.0.0" || h == "::" {
					h = "localhost"
				}
				hosts = append(hosts, h)
			}
		}
		out = append(out, certs.Node{Name: n.Name, Hosts: hosts})
	}
	return c.Cluster, out
}
