package config

import (
	"os"
	"strings"
	"time"
)

// Preempt configures failback (`preempt:`). Off by default: a node that
// comes back does not take the role back, so clients see no second
// interruption and a flapping node cannot cause repeated failovers.
type Preempt struct {
	Enabled bool
	Delay   time.Duration // how long the higher-priority node must be healthy first
}

// APIAuth configures the agent API's protection (`api:`).
type APIAuth struct {
	Token      string // bearer token required by every mutating call
	StatusOpen bool   // GET /status, /v1/events without a token (default true)
}

const defaultPreemptDelay = 30 * time.Second

func (b *builder) ops(f fields) {
	b.c.Preempt.Delay = defaultPreemptDelay
	if n, ok := f["preempt"]; ok {
		pf := b.mapping(n, "preempt", []string{"enabled", "delay"})
		if v, ok := pf["enabled"]; ok {
			b.c.Preempt.Enabled, _ = b.boolean(v, "preempt.enabled")
		}
		if v, ok := pf["delay"]; ok {
			if d, ok := b.duration(v, "preempt.delay"); ok {
				b.c.Preempt.Delay = d
			}
		}
	}
	b.c.OutagePolicy = "demote"
	if n, ok := f["outage_policy"]; ok {
		if s, ok := b.oneOf(n, "outage_policy", "demote", "failsafe"); ok {
			b.c.OutagePolicy = s
		}
	}
	b.c.APIAuth.StatusOpen = true
	if n, ok := f["api"]; ok {
		af := b.mapping(n, "api", []string{"token", "token_file", "status_open"})
		if v, ok := af["token"]; ok {
			b.c.APIAuth.Token, _ = b.str(v, "api.token")
		}
		if v, ok := af["token_file"]; ok {
			if p, ok := b.str(v, "api.token_file"); ok {
				data, err := os.ReadFile(b.resolve(p))
				if err != nil {
					b.add(v.Line, "api.token_file", "cannot read %s: %v; create it with the token on one line, readable by the agent", p, err)
				} else {
					b.c.APIAuth.Token = strings.TrimSpace(string(data))
				}
			}
		}
		if v, ok := af["status_open"]; ok {
			b.c.APIAuth.StatusOpen, _ = b.boolean(v, "api.status_open")
		}
		if t := b.c.APIAuth.Token; t != "" && len(t) < 16 {
			b.add(b.lineFor("api"), "api.token", "is %d characters; use at least 16 random characters (e.g. openssl rand -hex 16)", len(t))
		}
	}
	if b.c.OutagePolicy == "failsafe" && b.c.APIAuth.Token == "" {
		b.add(b.lineFor("outage_policy"), "outage_policy", "failsafe needs api.token: the agents confirm to each other over the authenticated API")
	}
	if b.c.Mode == "passive-backup" {
		primaries := 0
		for _, n := range b.c.Nodes {
			if !n.Witness && !n.Backup {
				primaries++
			}
		}
		if primaries == 0 {
			b.add(b.nodesLine, "nodes", "passive-backup mode needs at least one node without `backup: true` to serve by itself")
		}
	}
}
