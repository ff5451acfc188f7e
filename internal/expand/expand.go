// Package expand substitutes a node's variables (${NAME}) into the
// commands, addresses and environments of its service, hooks and checks.
package expand

import (
	"os"
	"sort"
)

// String replaces ${NAME} and $NAME in s with vars[NAME]; unknown names are
// left as written so that a typo is visible in errors rather than silently empty.
func String(s string, vars map[string]string) string {
	return os.Expand(s, func(name string) string {
		if v, ok := vars[name]; ok {
			return v
		}
		return "${" + name + "}"
	})
}

// All applies String to every element of args.
func All(args []string, vars map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = String(a, vars)
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
