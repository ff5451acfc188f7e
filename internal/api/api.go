// Package api is the agent's HTTP API: the wire types and the handlers for
// /lb-check, /healthz, /status, /metrics and /v1/role. It knows nothing of
// how the answers are computed; the agent implements Source.
package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/redundancy"
)

// NodeView is one node as shown by /status and `haven status --json`.
type NodeView struct {
	Name     string  `json:"name"`
	Alias    string  `json:"alias,omitempty"` // operators' name for it, when the store keeps aliases
	Site     string  `json:"site,omitempty"`
	Role     ha.Role `json:"role"`
	Healthy  bool    `json:"healthy"`
	Health   string  `json:"health,omitempty"`
	Eligible bool    `json:"eligible"`
	Why      string  `json:"why,omitempty"`
	// HeldBy: the switchover intent (its id) that alone keeps this
	// standby from being eligible; once the intent is over the standby
	// counts as available, even before its record says so
	// (operator.Available).
	HeldBy     string    `json:"held_by,omitempty"`
	Epoch      ha.Epoch  `json:"epoch"`
	Since      time.Time `json:"since,omitzero"`
	Reason     string    `json:"reason,omitempty"`
	AgentPID   int       `json:"agent_pid"`
	ServicePID int       `json:"service_pid"`
	API        string    `json:"api"`
	Witness    bool      `json:"witness,omitempty"`
	Heartbeat  time.Time `json:"heartbeat,omitzero"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	Version    string    `json:"version,omitempty"`
	Failovers  int64     `json:"failovers"`
	// Containment is how the service's processes are kept together so
	// that they die with it: "cgroup <dir>" or "process-group (why)".
	Containment string `json:"containment,omitempty"`
	VIP         string `json:"vip,omitempty"` // the virtual IP the node holds now, if any
	// Sessions: the node's session store, if it runs one.
	Sessions *ha.SessionStats `json:"sessions,omitempty"`
	// Folders: on the active, how far each standby is behind in each
	// replicated folder; on a promoted node, what it lacked.
	Folders []ha.FolderStats `json:"folders,omitempty"`
	// LockDelay: the node's latest promotion that waited on the
	// lock-delay, or the wait in progress (Until set).
	LockDelay *ha.LockDelay `json:"lock_delay,omitempty"`
	// VIPLockDelay: the same for the VIP's own election (vip.follow: proxy).
	VIPLockDelay *ha.LockDelay `json:"vip_lock_delay,omitempty"`
}

// Status is the cluster as one agent sees it.
type Status struct {
	Cluster  string     `json:"cluster"`
	Mode     string     `json:"mode"`
	Reporter string     `json:"reporter"` // the node that answered
	Leader   ha.Leader  `json:"leader"`
	Nodes    []NodeView `json:"nodes"`
	Time     time.Time  `json:"time"`
	// LeaderKnown is false when the answering agent has no current view
	// of the store: it has not read it since it started, has not
	// reached it for longer than the lease, or its watch of the store is
	// starting over and has not read it again. Leader is then zero and means
	// nothing: not "nobody is active" but "this agent cannot tell"; ask
	// another agent, or wait. LeaderUnknown says why. Agents older than
	// these fields send neither: Go code tests LeaderIsUnknown.
	LeaderKnown   bool   `json:"leader_known"`
	LeaderUnknown string `json:"leader_unknown,omitempty"`
	// LastFailover is the last failover after the loss of the active that
	// the answering agent saw (nil if none since it started): its Duration
	// runs from the old active's last lease renewal to the new active.
	LastFailover *ha.Event `json:"last_failover,omitempty"`
	// Redundancy is the cluster's redundancy as this agent judges it:
	// ok, degraded or no-active, with the reasons.
	Redundancy *redundancy.Report `json:"redundancy,omitempty"`
	// Warnings are the reporter's security warnings: running without TLS,
	// a certificate that expires within 30 days; and an embedded etcd
	// member's database near its quota or over it (NOSPACE).
	Warnings []string `json:"warnings,omitempty"`
	// VIP is the cluster's virtual IP, if it has one: what it follows and
	// which nodes hold it now.
	VIP *VIPView `json:"vip,omitempty"`
}

// VIPView is the cluster's virtual IP as status shows it.
type VIPView struct {
	Address string   `json:"address"`
	Follows string   `json:"follows"` // "active" or "proxy"
	Holders []string `json:"holders"` // the nodes that report holding it; one, or none while it moves
}

// RoleView is this node's own role, for the local service.
type RoleView struct {
	Node    string   `json:"node"`
	Role    ha.Role  `json:"role"`
	Epoch   ha.Epoch `json:"epoch"`
	Serving bool     `json:"serving"`
	// ValidForMS bounds how long serving stays true if the agent loses
	// the store: the self-fence deadline. It is not a promise to keep
	// serving that long: a switchover, maintenance or an unhealthy service
	// ends serving at once. Do not cache Serving; ask before acting as
	// active, or act on the on_demote hook.
	ValidForMS int64 `json:"valid_for_ms"`
	// Leader is the node that holds the active role as this agent sees
	// the store ("" if none), when LeaderKnown; LeaderKnown and
	// LeaderUnknown are as in Status (Leader is "" while not known).
	Leader        string `json:"leader"`
	LeaderKnown   bool   `json:"leader_known"`
	LeaderUnknown string `json:"leader_unknown,omitempty"`
}

// KnownLeaderHeader carries LeaderKnown ("true" or "false") on the
// answers of /status and /v1/role, as Consul's X-Consul-KnownLeader does.
const KnownLeaderHeader = "X-Haven-Known-Leader"

func knownLeader(w http.ResponseWriter, known bool) {
	w.Header().Set(KnownLeaderHeader, strconv.FormatBool(known))
}

// LeaderIsUnknown reports whether the answering agent said it cannot tell
// who holds the active role (LeaderKnown false, LeaderUnknown why). An
// agent older than these fields, or a Status built without them, counts
// as knowing.
func (s Status) LeaderIsUnknown() bool { return s.LeaderUnknown != "" }

// LeaderIsUnknown is as for Status.
func (v RoleView) LeaderIsUnknown() bool { return v.LeaderUnknown != "" }

// Source answers the API's questions.
type Source interface {
	Serving() bool
	Status() Status
	Role() RoleView
	Metrics() http.Handler
}

// Handler returns the API's routes. op may be nil (no operator actions).
func Handler(src Source, op Operator, o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /lb-check", func(w http.ResponseWriter, r *http.Request) {
		// Computed from local memory and the clock only: never waits on the store.
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if src.Serving() {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("unavailable\n"))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /v1/role", func(w http.ResponseWriter, r *http.Request) {
		v := src.Role()
		knownLeader(w, !v.LeaderIsUnknown())
		writeJSON(w, http.StatusOK, v)
	})
	mux.Handle("GET /metrics", src.Metrics())
	for _, p := range o.RedirectPaths {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, r *http.Request) {
			base, ok := o.RedirectTarget()
			if !ok {
				w.Header().Set("Retry-After", "1")
				WriteError(w, http.StatusServiceUnavailable, "no node is active right now; retry shortly")
				return
			}
			http.Redirect(w, r, base+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		})
	}
	if kv, ok := src.(KVStore); ok {
		registerKV(mux, kv, o) // fenced data for the service (kv.go)
	}
	if op != nil {
		registerOps(mux, src, op, o)
	} else {
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
			st := src.Status()
			knownLeader(w, !st.LeaderIsUnknown())
			writeJSON(w, http.StatusOK, st)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The path may exist for another method: say which (405), else 404.
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if m == r.Method {
				continue
			}
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, pat := mux.Handler(r2); pat != "/" && pat != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path+"; use "+strings.Join(allow, " or "))
			return
		}
		WriteError(w, http.StatusNotFound, "no such endpoint "+r.URL.Path+"; try /status, /lb-check, /metrics or /healthz")
	})
	return mux
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

// WriteError writes a JSON error with status code.
func WriteError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Error{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
