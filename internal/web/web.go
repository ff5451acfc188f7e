// Package web is the dashboard every agent serves at /ui/: a cluster
// overview, the event timeline, node details with logs, and the operator
// actions (switchover, maintenance, promote, service control), updated live
// over server-sent events. The pages are plain HTML, CSS and JavaScript
// embedded in the binary, so the dashboard works with no internet.
//
// Security: users and their bcrypt password hashes come from the config;
// a login makes an in-memory session on this agent (HttpOnly, SameSite=Strict
// cookie, Secure under TLS). Every POST needs a JSON body, a same-origin
// request and the session's CSRF token; every action also needs an operator
// who re-types their password. Failed logins and confirmations are
// rate-limited per client address and per user. Every login and action goes
// to the agent's audit log.
//
// Viewers see the status, the timeline, node details and the masked
// configuration; logs, which may hold what the masking hides, are for
// operators only.
//
// Cluster actions call the local agent in-process; service actions and log
// downloads for another node go to that node's agent API with api.token.
// Aliases live in the coordination store when it keeps node properties, so
// every node's dashboard shows the same; otherwise each dashboard keeps its
// own.
package web

import (
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
)

//go:embed assets
var assets embed.FS

// Options wire the dashboard to its agent.
type Options struct {
	Config   *config.Config
	Node     string // this agent's node
	Source   api.Source
	Operator api.Operator
	Logs     api.LogSource // this node's log
	// Aliases keeps node aliases in the store, where every node's
	// dashboard sees them. Nil, or a store that keeps none: this
	// dashboard keeps them in data_dir/<node>/dashboard.json.
	Aliases api.Aliaser
	Audit   func(api.AuditEntry)
	Log     *slog.Logger

	// Client calls other agents (default: a plain client with the
	// config's token and a 30 s timeout). For tests: the clock (default
	// time.Now) and the state file directory (default data_dir/<node>).
	Now    func() time.Time
	Client *api.Client
	Dir    string
}

// Handler serves the dashboard under /ui/.
type Handler struct {
	o        Options
	d        config.Dashboard
	mux      *http.ServeMux
	sessions *sessions
	limiter  *limiter
	aliases  *aliases
	dummy    []byte // a hash to compare against for unknown users
	origin   *http.CrossOriginProtection
	done     chan struct{}
	once     sync.Once
	streams  atomic.Int32 // live streams open
}

// New builds the dashboard handler. With the dashboard off in the config it
// answers every request with a hint how to turn it on.
func New(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		co := api.ClientOptions{Timeout: 30 * time.Second}
		if o.Config != nil {
			co.Token = o.Config.APIAuth.Token
		}
		o.Client = api.NewClient(co)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Dir == "" && o.Config != nil {
		o.Dir = o.Config.DataDir + "/" + o.Node
	}
	h := &Handler{
		o:        o,
		mux:      http.NewServeMux(),
		sessions: newSessions(),
		limiter:  newLimiter(5, 30*time.Second),
		origin:   http.NewCrossOriginProtection(),
		done:     make(chan struct{}),
	}
	if o.Config != nil {
		h.d = o.Config.Dashboard
	}
	h.aliases = loadAliases(o.Dir, o.Log)
	h.dummy = dummyHash(h.d)
	h.routes()
	return h
}

// Close ends the live streams, so that the HTTP server can shut down
// without waiting for them.
func (h *Handler) Close() { h.once.Do(func() { close(h.done) }) }

func (h *Handler) routes() {
	m := h.mux
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	m.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})
	m.Handle("GET /ui/assets/", http.StripPrefix("/ui/assets/", files))

	m.HandleFunc("POST /ui/api/login", h.post(h.login))
	m.HandleFunc("POST /ui/api/logout", h.post(h.logout))
	m.HandleFunc("GET /ui/api/session", h.session)

	m.HandleFunc("GET /ui/api/status", h.viewer(h.status))
	m.HandleFunc("GET /ui/api/events", h.viewer(h.events))
	m.HandleFunc("GET /ui/api/config", h.viewer(h.config))
	m.HandleFunc("GET /ui/api/logs", h.operatorRead("read logs", h.logs))
	m.HandleFunc("GET /ui/api/logs/download", h.operatorRead("download logs", h.download))
	m.HandleFunc("GET /ui/events/stream", h.viewer(h.stream))

	m.HandleFunc("POST /ui/api/switchover", h.post(h.action("switchover", h.switchover)))
	m.HandleFunc("POST /ui/api/maintenance", h.post(h.action("maintenance", h.maintenance)))
	m.HandleFunc("POST /ui/api/promote", h.post(h.action("promote", h.promote)))
	m.HandleFunc("POST /ui/api/service", h.post(h.action("service", h.service)))
	m.HandleFunc("POST /ui/api/alias", h.post(h.action("alias", h.setAlias)))

	m.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, http.StatusNotFound, "no such page "+r.URL.Path+"; the dashboard is at /ui/")
	})
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	if !h.d.Enabled {
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("The dashboard is off on this cluster. Turn it on with a dashboard: section\n" +
			"listing users and their bcrypt password hashes (make one with\n" +
			"`haven dashboard hash-password`), and api.token; see docs/dashboard.md.\n"))
		return
	}
	h.mux.ServeHTTP(w, r)
}

// post guards every state-changing request: a JSON body (so that a
// cross-site form cannot send it without a CORS preflight, which is never
// granted) from this origin, as net/http's CrossOriginProtection judges it
// from Sec-Fetch-Site and Origin. The session's CSRF token is checked on
// top of this (csrfOK).
func (h *Handler) post(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			api.WriteError(w, http.StatusUnsupportedMediaType, "send the request as application/json")
			return
		}
		if h.origin.Check(r) != nil {
			api.WriteError(w, http.StatusForbidden, "cross-origin request refused; use the dashboard at /ui/")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		next(w, r)
	}
}

// who names a dashboard user in the audit log and the history.
func (h *Handler) who(user string) string { return user + " (dashboard on " + h.o.Node + ")" }

func (h *Handler) audit(r *http.Request, who, action, body string, code int, result string) {
	if h.o.Audit == nil {
		return
	}
	h.o.Audit(api.AuditEntry{Time: h.o.Now(), Who: who, Remote: r.RemoteAddr, Action: "dashboard " + action, Body: body, Status: code, Result: result})
}
