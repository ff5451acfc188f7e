package drill

// Lab is the drill's network-namespace lab offered to other tests: n
// machines, each a namespace with an address on a cluster network that the
// host reaches too (docs/deploy.md's quick start runs on one).
type Lab struct{ l *lab }

// NewLab creates n namespaces and their links. It needs root; Close
// removes them.
func NewLab(n int) (*Lab, error) {
	l, err := newLab(n)
	if err != nil {
		return nil, err
	}
	return &Lab{l: l}, nil
}

// Namespace is the network namespace of machine i (1..n).
func (l *Lab) Namespace(i int) string { return l.l.ns[i-1] }

// IP is machine i's address on the cluster network.
func (l *Lab) IP(i int) string { return l.l.clusterIP(i) }

// Close removes the namespaces and links.
func (l *Lab) Close() { l.l.close() }
