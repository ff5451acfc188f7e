package config

import "github.com/haven-ha/haven/internal/expand"

// Vars returns the variables a node's service, hooks and checks see: the
// node's env plus HAVEN_NODE, HAVEN_CLUSTER and HAVEN_API (the agent API address).
func (c *Config) Vars(n Node) map[string]string {
	v := make(map[string]string, len(n.Env)+2)
	for k, val := range n.Env {
		v[k] = val
	}
	v["HAVEN_NODE"] = n.Name
	v["HAVEN_CLUSTER"] = c.Cluster
	if n.API != "" {
		v["HAVEN_API"] = n.API
	}
	if c.TLS.Enabled() {
		// What the service needs to reach the agent API under TLS.
		f := c.TLS.For(n.Name)
		v["HAVEN_TLS_CA"], v["HAVEN_TLS_CERT"], v["HAVEN_TLS_KEY"] = f.CA, f.Cert, f.Key
	}
	return v
}

// Expand replaces ${NAME} and $NAME in s with vars[NAME] (expand.String).
func Expand(s string, vars map[string]string) string { return expand.String(s, vars) }

// ExpandAll applies Expand to every element of args (expand.All).
func ExpandAll(args []string, vars map[string]string) []string { return expand.All(args, vars) }

// Environ turns vars into KEY=VALUE pairs, sorted (expand.Environ).
func Environ(vars map[string]string) []string { return expand.Environ(vars) }
