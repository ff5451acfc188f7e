package config

// Priorities maps each node's name to its priority (preemption and the
// choice of a switchover target).
func (c *Config) Priorities() map[string]int {
	p := make(map[string]int, len(c.Nodes))
	for _, n := range c.Nodes {
		p[n.Name] = n.Priority
	}
	return p
}
