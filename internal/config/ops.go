package config

import (
	"os"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/ha"
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
	// LBCheckListen is a plain-HTTP listener for /lb-check and /healthz
	// only, for load balancers that cannot do TLS health checks; empty: none.
	LBCheckListen string
}

// Redirect sends users who reach an agent at one of Paths to the active
// node's backend, or to To (a load balancer) when set (`redirect:`).
type Redirect struct {
	Paths []string
	To    string
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
	b.c.OutagePolicy = OutageDemote
	if n, ok := f["outage_policy"]; ok {
		if s, ok := b.oneOf(n, "outage_policy", string(OutageDemote), string(OutageFailsafe)); ok {
			b.c.OutagePolicy = OutagePolicy(s)
		}
	}
	b.c.LockDelay = LockDelayAuto
	if n, ok := f["lock_delay"]; ok {
		if s, ok := b.oneOf(n, "lock_delay", string(LockDelayAuto), string(LockDelayOff)); ok {
			b.c.LockDelay = LockDelay(s)
		}
	}
	b.c.APIAuth.StatusOpen = true
	if n, ok := f["api"]; ok {
		af := b.mapping(n, "api", []string{"token", "token_file", "status_open", "lb_check_listen"})
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
		if v, ok := af["lb_check_listen"]; ok {
			b.c.APIAuth.LBCheckListen = b.listenAddr(v, "api.lb_check_listen")
		}
		if t := b.c.APIAuth.Token; t != "" && len(t) < 16 {
			b.add(b.lineFor("api"), "api.token", "is %d characters; use at least 16 random characters (e.g. openssl rand -hex 16)", len(t))
		}
	}
	if n, ok := f["redirect"]; ok {
		rf := b.mapping(n, "redirect", []string{"paths", "to"})
		if v, ok := rf["paths"]; ok {
			if paths, ok := b.strList(v, "redirect.paths"); ok {
				for _, p := range paths {
					if !strings.HasPrefix(p, "/") || p == "/" || strings.HasPrefix(p, "/v1/") || p == "/status" || p == "/lb-check" || p == "/metrics" || p == "/healthz" || strings.HasPrefix(p, "/ui") {
						b.add(v.Line, "redirect.paths", "path %q cannot be redirected; give user-facing paths such as /app/ (not /, the API's own paths or /ui)", p)
					}
				}
				b.c.Redirect.Paths = paths
			}
		}
		if v, ok := rf["to"]; ok {
			if to, ok := b.str(v, "redirect.to"); ok {
				if !strings.HasPrefix(to, "http://") && !strings.HasPrefix(to, "https://") {
					b.add(v.Line, "redirect.to", "%q is not a URL; give the load balancer's base URL, e.g. https://app.example.com", to)
				}
				b.c.Redirect.To = strings.TrimRight(to, "/")
			}
		}
		if len(b.c.Redirect.Paths) > 0 && b.c.Redirect.To == "" {
			for i, node := range b.c.Nodes {
				if !node.Witness && node.Backend == "" {
					b.add(b.lineFor(indexField("nodes", i)), indexField("nodes", i)+".backend", "missing; redirect without `to` sends users to the active node's backend, so every node needs backend: host:port")
				}
			}
		}
	}
	if b.c.OutagePolicy == OutageFailsafe && b.c.APIAuth.Token == "" {
		b.add(b.lineFor("outage_policy"), "outage_policy", "failsafe needs api.token: the agents confirm to each other over the authenticated API")
	}
	if b.c.Mode == ha.ModePassiveBackup {
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
