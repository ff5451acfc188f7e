package certs

// Cluster is what InitFor and NodesOf need of a cluster's configuration
// (*config.Config has it): its name and its nodes with the hosts their
// certificates carry.
type Cluster interface {
	CertNodes() (cluster string, nodes []Node)
}

// NodesOf lists c's nodes with the hosts of their addresses (api, peer,
// client), the names their certificates carry.
func NodesOf(c Cluster) []Node {
	_, nodes := c.CertNodes()
	return nodes
}

// InitFor is Init for every node of c.
func InitFor(dir string, c Cluster) error {
	name, nodes := c.CertNodes()
	return Init(dir, name, nodes)
}
