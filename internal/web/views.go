package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// httpError is an error answered by another agent, with its status.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// statusOf maps an error to the HTTP status the dashboard answers with.
func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.code
	}
	return api.StatusOf(err)
}

// statusView is the cluster as the page shows it: the agent's status and
// the nodes' aliases, from the store (AliasesShared) or from this
// dashboard's own file.
type statusView struct {
	api.Status
	Aliases       map[string]string `json:"aliases"`
	AliasesShared bool              `json:"aliases_shared"`
}

// aliasesShared reports whether aliases live in the store.
func (h *Handler) aliasesShared() bool { return h.o.Aliases != nil && h.o.Aliases.AliasesShared() }

func (h *Handler) statusNow() statusView {
	v := statusView{Status: h.o.Source.Status(), AliasesShared: h.aliasesShared()}
	if !v.AliasesShared {
		v.Aliases = h.aliases.all()
		return v
	}
	v.Aliases = map[string]string{}
	for _, n := range v.Nodes {
		if n.Alias != "" {
			v.Aliases[n.Name] = n.Alias
		}
	}
	return v
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, _ *session) {
	writeJSON(w, http.StatusOK, h.statusNow())
}

func (h *Handler) events(w http.ResponseWriter, r *http.Request, _ *session) {
	limit := 200
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 2000 {
			api.WriteError(w, http.StatusBadRequest, "limit must be a whole number from 1 to 2000")
			return
		}
		limit = n
	}
	if h.o.Operator == nil {
		writeJSON(w, http.StatusOK, []ha.Event{})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	evs, err := h.o.Operator.Events(ctx, limit)
	if err != nil {
		api.WriteError(w, statusOf(err), err.Error())
		return
	}
	if evs == nil {
		evs = []ha.Event{}
	}
	writeJSON(w, http.StatusOK, evs)
}

// secretEnv matches NAME=value pairs whose name suggests a secret.
var secretEnv = regexp.MustCompile(`\b([A-Za-z0-9_]*(?i:pass|secret|token|key|credential|dsn)[A-Za-z0-9_]*=)\S+`)

// config renders the effective configuration with every secret masked:
// the API token, the dashboard's password hashes, the proxy's cookie key,
// the store's credentials and environment values named like secrets.
func (h *Handler) config(w http.ResponseWriter, r *http.Request, _ *session) {
	c := h.o.Config
	text := c.Describe()
	var b strings.Builder
	b.WriteString(text)
	fmt.Fprintf(&b, "\napi: token %s, status without a token: %v\n", setOrNot(c.APIAuth.Token), c.APIAuth.StatusOpen)
	fmt.Fprintf(&b, "dashboard: sessions last %s, secure cookies: %s\n", c.Dashboard.SessionTTL, c.Dashboard.SecureCookies)
	for _, u := range c.Dashboard.Users {
		fmt.Fprintf(&b, "  user %s\t%s\tpassword_hash ***\n", u.Name, u.Role)
	}
	out := secretEnv.ReplaceAllString(b.String(), "${1}***")
	for _, s := range h.secrets() {
		out = strings.ReplaceAll(out, s, "***")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, out)
}

// secrets are the config's secret values, masked wherever they might show.
func (h *Handler) secrets() []string {
	c := h.o.Config
	var s []string
	add := func(v string) {
		if len(v) >= 4 {
			s = append(s, v)
		}
	}
	add(c.APIAuth.Token)
	add(c.Proxy.Sticky.Key)
	add(c.Store.DSN)
	for _, u := range c.Dashboard.Users {
		add(u.PasswordHash)
	}
	return s
}

func setOrNot(s string) string {
	if s == "" {
		return "not set (operator calls over the API are off)"
	}
	return "set (hidden)"
}

// nodeLog fetches node's log: this node's from the agent, another's from
// its agent's API with the API token.
func (h *Handler) nodeLog(ctx context.Context, node string, lines int) ([]byte, error) {
	if node == "" || node == h.o.Node {
		if h.o.Logs == nil {
			return nil, ha.Errorf(ha.KindNotFound, "this agent keeps no log file")
		}
		return h.o.Logs.Logs(lines)
	}
	addr, err := h.nodeAPI(node)
	if err != nil {
		return nil, err
	}
	data, err := h.o.Client.Logs(ctx, addr, lines)
	if err != nil {
		return nil, remoteError(node, err)
	}
	return data, nil
}

// remoteError turns a failed call to another agent into the dashboard's
// answer: the other agent's status and message, 502 if it did not answer.
func remoteError(node string, err error) error {
	var ce *api.CallError
	if !errors.As(err, &ce) {
		return err
	}
	switch {
	case ce.Status == 0:
		return &httpError{http.StatusBadGateway, fmt.Sprintf("cannot reach the agent of %s at %s: %v", node, ce.URL, ce.Err)}
	case ce.Status == http.StatusUnauthorized:
		// The API token differs; not the user's login.
		return &httpError{http.StatusBadGateway, "the agent of " + node + " refused this node's api.token (is the config the same on every node?): " + ce.Msg}
	}
	msg := ce.Msg
	if msg == "" {
		msg = http.StatusText(ce.Status)
	}
	return &httpError{ce.Status, node + ": " + msg}
}

func (h *Handler) nodeAPI(node string) (string, error) {
	n, ok := h.o.Config.NodeByName(node)
	switch {
	case !ok:
		return "", ha.Errorf(ha.KindNotFound, "no node %q in the configuration", node)
	case n.Witness || n.API == "":
		return "", ha.Errorf(ha.KindConflict, "%s is a witness: it runs no agent API", node)
	}
	return n.API, nil
}

func (h *Handler) logs(w http.ResponseWriter, r *http.Request, _ *session) {
	lines := 200
	if s := r.URL.Query().Get("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 5000 {
			api.WriteError(w, http.StatusBadRequest, "lines must be a whole number from 1 to 5000")
			return
		}
		lines = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	data, err := h.nodeLog(ctx, r.URL.Query().Get("node"), lines)
	if err != nil {
		api.WriteError(w, statusOf(err), err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(data)
}

func (h *Handler) download(w http.ResponseWriter, r *http.Request, s *session) {
	node := r.URL.Query().Get("node")
	if node == "" {
		node = h.o.Node
	}
	ctx, cancel := context.WithTimeout(r.Context(), 25*time.Second)
	defer cancel()
	data, err := h.nodeLog(ctx, node, 0)
	if err != nil {
		h.audit(r, h.who(s.user), "download logs", node, statusOf(err), err.Error())
		api.WriteError(w, statusOf(err), err.Error())
		return
	}
	h.audit(r, h.who(s.user), "download logs", node, http.StatusOK, fmt.Sprintf("ok, %d bytes", len(data)))
	name := fmt.Sprintf("haven-%s-%s-%s.log", h.o.Config.Cluster, node, h.o.Now().UTC().Format("20060102-150405"))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}

// Live updates. Each stream reads the agent's in-memory status every
// pollEvery and sends it when it changed (heartbeat times and the clock
// aside), and at least every resendEvery so the page's clock stays in step.
// Reading memory costs nothing and loads no store, so a failover reaches
// the page within a poll of the agent seeing it.
const (
	pollEvery   = 200 * time.Millisecond
	resendEvery = 5 * time.Second
	maxStreams  = 64
)

func (h *Handler) stream(w http.ResponseWriter, r *http.Request, s *session) {
	if h.streams.Add(1) > maxStreams {
		h.streams.Add(-1)
		api.WriteError(w, http.StatusServiceUnavailable, "too many live dashboards on this node; close some tabs")
		return
	}
	defer h.streams.Add(-1)

	rc := http.NewResponseController(w)
	// The agent's server has write and read timeouts for API calls; a
	// stream must outlive them.
	_ = rc.SetWriteDeadline(time.Time{})
	_ = rc.SetReadDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 1000\n\n")

	var last []byte
	var sent time.Time
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if _, ok := h.sessions.get(s.id, h.o.Now()); !ok {
			_, _ = io.WriteString(w, "event: logout\ndata: {}\n\n")
			_ = rc.Flush()
			return
		}
		v := h.statusNow()
		key := fingerprint(v)
		if !bytes.Equal(key, last) || time.Since(sent) >= resendEvery {
			data, _ := json.Marshal(v)
			if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", data); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			last, sent = key, time.Now()
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		}
	}
}

// fingerprint is v without what changes on every read.
func fingerprint(v statusView) []byte {
	v.Time = time.Time{}
	nodes := make([]api.NodeView, len(v.Nodes))
	copy(nodes, v.Nodes)
	for i := range nodes {
		nodes[i].Heartbeat = time.Time{}
	}
	v.Nodes = nodes
	b, _ := json.Marshal(v)
	return b
}

// aliases are the names people give nodes on this dashboard, kept in
// data_dir/<node>/dashboard.json, for stores that keep no node properties:
// each node's dashboard then has its own.
type aliases struct {
	mu   sync.Mutex
	path string
	m    map[string]string
}

type dashboardFile struct {
	Aliases map[string]string `json:"aliases"`
}

func loadAliases(dir string, log *slog.Logger) *aliases {
	a := &aliases{m: map[string]string{}}
	if dir == "" {
		return a
	}
	a.path = filepath.Join(dir, "dashboard.json")
	data, err := os.ReadFile(a.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot read the dashboard's aliases", "err", err)
		}
		return a
	}
	var f dashboardFile
	if err := json.Unmarshal(data, &f); err != nil {
		log.Warn("cannot read the dashboard's aliases", "file", a.path, "err", err)
		return a
	}
	for k, v := range f.Aliases {
		a.m[k] = v
	}
	return a
}

func (a *aliases) all() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.m))
	for k, v := range a.m {
		out[k] = v
	}
	return out
}

// set changes node's alias ("" removes it) and saves the file atomically.
func (a *aliases) set(node, alias string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := make(map[string]string, len(a.m)+1)
	for k, v := range a.m {
		next[k] = v
	}
	if alias == "" {
		delete(next, node)
	} else {
		next[node] = alias
	}
	if a.path != "" {
		data, _ := json.MarshalIndent(dashboardFile{Aliases: next}, "", "  ")
		if err := os.MkdirAll(filepath.Dir(a.path), 0o700); err != nil {
			return ha.Wrap(ha.KindInternal, err, "save the alias")
		}
		tmp := a.path + ".tmp"
		if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
			return ha.Wrap(ha.KindInternal, err, "save the alias")
		}
		if err := os.Rename(tmp, a.path); err != nil {
			return ha.Wrap(ha.KindInternal, err, "save the alias")
		}
	}
	a.m = next
	return nil
}
