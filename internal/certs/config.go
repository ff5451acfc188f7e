package certs

import (
	"net"

	"github.com/haven-ha/haven/internal/config"
)

// NodesOf lists cfg's nodes with the hosts of their addresses (api, peer,
// client), the names their certificates carry. An address without a host
// or on every interface stands for localhost.
func NodesOf(cfg *config.Config) []Node {
	var out []Node
	for _, n := range cfg.Nodes {
		var hosts []string
		for _, a := range []string{n.API, n.Peer, n.Client} {
			if h, _, err := net.SplitHostPort(a); err == nil {
				if h == "" || h == "0.0.0.0" || h == "::" {
					h = "localhost"
				}
				hosts = append(hosts, h)
			}
		}
		out = append(out, Node{Name: n.Name, Hosts: hosts})
	}
	return out
}

// InitFor is Init for every node of cfg.
func InitFor(dir string, cfg *config.Config) error {
	return Init(dir, cfg.Cluster, NodesOf(cfg))
}
