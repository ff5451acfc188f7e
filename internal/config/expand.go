package config

import (
	"os"
	"sort"
)

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

// Expand replaces ${NAME} and $NAME in s with vars[NAME]; unknown names are
// left as written so that a typo is visible in errors rather than silently empty.
func Expand(s string, vars map[string]string) string {
	return os.Expand(s, func(name string) string {
		if v, ok := vars[name]; ok {
			return v
		}
		return "${" + name + "}"
	})
}

// ExpandAll applies Expand to every element of args.
func ExpandAll(args []string, vars map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = Expand(a, vars)
	}
	return out
}

// Environ turns vars into KEY=VALUE pairs, sorted for stable output.
func Environ(vars map[string]string) []string {
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
