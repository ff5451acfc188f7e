package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

const (
	opPass     = "operator-pass-1"
	viewerPass = "viewer-pass-1"
	apiToken   = "api-token-0123456789abcdef"
)

// fakeAgent is a small in-memory agent: a status that tests change, and
// operator calls recorded.
type fakeAgent struct {
	api.Operator // methods the dashboard does not use; nil
	mu           sync.Mutex
	st           api.Status
	calls        []string
}

func (f *fakeAgent) Serving() bool         { return true }
func (f *fakeAgent) Role() api.RoleView    { return api.RoleView{} }
func (f *fakeAgent) Metrics() http.Handler { return http.NotFoundHandler() }
func (f *fakeAgent) Status() api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Nodes = append([]api.NodeView(nil), f.st.Nodes...)
	st.Time = time.Now()
	return st
}

func (f *fakeAgent) setRole(node string, role ha.Role) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.st.Nodes {
		if f.st.Nodes[i].Name == node {
			f.st.Nodes[i].Role = role
		}
	}
}

func (f *fakeAgent) call(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeAgent) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeAgent) Switchover(_ context.Context, r api.SwitchoverRequest) (api.SwitchoverResult, error) {
	f.call("switchover " + r.To + " by " + r.Who)
	return api.SwitchoverResult{From: "a", To: r.To, Epoch: 8}, nil
}
func (f *fakeAgent) Promote(_ context.Context, r api.PromoteRequest) (api.SwitchoverResult, error) {
	f.call("promote " + r.Node)
	return api.SwitchoverResult{To: r.Node, Epoch: 9}, nil
}
func (f *fakeAgent) Maintenance(_ context.Context, r api.MaintenanceRequest) (api.MaintenanceResult, error) {
	f.call(fmt.Sprintf("maintenance %s %v", r.Node, r.On))
	return api.MaintenanceResult{Node: r.Node, On: r.On}, nil
}
func (f *fakeAgent) ServiceControl(_ context.Context, r api.ServiceRequest) (api.ServiceResult, error) {
	f.call("service " + r.Action)
	return api.ServiceResult{Node: "a", Action: r.Action, PID: 42}, nil
}
func (f *fakeAgent) Events(context.Context, int) ([]ha.Event, error) {
	return []ha.Event{{Kind: "role", Node: "a", From: "standby", To: "active", Epoch: 7}}, nil
}
func (f *fakeAgent) Failsafe(context.Context, api.FailsafeRequest) (api.FailsafeResult, error) {
	return api.FailsafeResult{}, nil
}
func (f *fakeAgent) Logs(lines int) ([]byte, error) {
	return []byte(fmt.Sprintf("log of a, %d lines\n", lines)), nil
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t      *testing.T
	h      *Handler
	agent  *fakeAgent
	clock  *fakeClock
	audit  []api.AuditEntry
	auditM sync.Mutex
	remote *httptest.Server // node b's agent API
	remReq []*http.Request
}

func hash(t *testing.T, p string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, agent: &fakeAgent{}, clock: &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	f.remote = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.auditM.Lock()
		f.remReq = append(f.remReq, r.Clone(context.Background()))
		f.auditM.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+apiToken {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"wrong token"}`)
			return
		}
		switch r.URL.Path {
		case "/v1/logs":
			_, _ = io.WriteString(w, "log of b\n")
		case "/v1/service":
			var req api.ServiceRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			_ = json.NewEncoder(w).Encode(api.ServiceResult{Node: "b", Action: req.Action, PID: 43})
		}
	}))
	t.Cleanup(f.remote.Close)
	remote := strings.TrimPrefix(f.remote.URL, "http://")
	cfg := &config.Config{
		Cluster: "test",
		Nodes:   []config.Node{{Name: "a", API: "127.0.0.1:1"}, {Name: "b", API: remote}, {Name: "w", Witness: true}},
		APIAuth: config.APIAuth{Token: apiToken, StatusOpen: true},
		Dashboard: config.Dashboard{Enabled: true, SessionTTL: time.Hour, SecureCookies: "auto", Users: []config.DashboardUser{
			{Name: "olga", Role: config.RoleOperator, PasswordHash: hash(t, opPass)},
			{Name: "vic", Role: config.RoleViewer, PasswordHash: hash(t, viewerPass)},
		}},
	}
	f.agent.st = api.Status{Cluster: "test", Reporter: "a", Leader: ha.Leader{Node: "a", Epoch: 7}, Nodes: []api.NodeView{
		{Name: "a", Role: ha.RoleActive, Healthy: true, Epoch: 7},
		{Name: "b", Role: ha.RoleStandby, Healthy: true},
		{Name: "w", Role: "witness", Witness: true},
	}}
	f.h = New(Options{
		Config: cfg, Node: "a", Source: f.agent, Operator: f.agent, Logs: f.agent,
		Audit: func(e api.AuditEntry) { f.auditM.Lock(); f.audit = append(f.audit, e); f.auditM.Unlock() },
		Now:   f.clock.Now, Dir: t.TempDir(),
	})
	return f
}

type call struct {
	method, path, body string
	cookie             *http.Cookie
	csrf, remote       string
	headers            map[string]string
}

func (f *fixture) do(c call) *httptest.ResponseRecorder {
	f.t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	r := httptest.NewRequest(c.method, c.path, body)
	if c.method == http.MethodPost {
		r.Header.Set("Content-Type", "application/json")
	}
	if c.cookie != nil {
		r.AddCookie(c.cookie)
	}
	if c.csrf != "" {
		r.Header.Set(csrfHeader, c.csrf)
	}
	if c.remote != "" {
		r.RemoteAddr = c.remote
	}
	for k, v := range c.headers {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// login logs user in and returns the session cookie and CSRF token.
func (f *fixture) login(user, pass string) (*http.Cookie, string) {
	f.t.Helper()
	w := f.do(call{method: "POST", path: "/ui/api/login", body: fmt.Sprintf(`{"user":%q,"password":%q}`, user, pass)})
	if w.Code != http.StatusOK {
		f.t.Fatalf("login %s: %d %s", user, w.Code, w.Body)
	}
	var v sessionView
	_ = json.Unmarshal(w.Body.Bytes(), &v)
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || v.CSRF == "" {
		f.t.Fatalf("login %s: cookies %v, session %+v", user, cookies, v)
	}
	return cookies[0], v.CSRF
}

func TestLoginSetsAStrictHttpOnlyCookie(t *testing.T) {
	f := newFixture(t)
	w := f.do(call{method: "POST", path: "/ui/api/login", body: `{"user":"olga","password":"` + opPass + `"}`})
	if w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	c := w.Result().Cookies()[0]
	if c.Name != "haven_session_a" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/ui/" || c.MaxAge != 3600 {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, Path /ui/, an hour", c)
	}
	// Under TLS the cookie is Secure.
	r := httptest.NewRequest("POST", "https://x/ui/api/login", strings.NewReader(`{"user":"olga","password":"`+opPass+`"}`))
	r.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	if c := rec.Result().Cookies()[0]; !c.Secure {
		t.Fatal("cookie not Secure under TLS")
	}
	if got := w.Header().Get("Content-Security-Policy"); !strings.Contains(got, "script-src 'self'") || !strings.Contains(got, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", got)
	}
	// The session answers who is logged in; without the cookie, 401.
	cookie, csrf := f.login("olga", opPass)
	w = f.do(call{method: "GET", path: "/ui/api/session", cookie: cookie})
	if w.Code != 200 || !strings.Contains(w.Body.String(), csrf) || !strings.Contains(w.Body.String(), `"role":"operator"`) {
		t.Fatalf("session: %d %s", w.Code, w.Body)
	}
	if w := f.do(call{method: "GET", path: "/ui/api/status"}); w.Code != http.StatusUnauthorized {
		t.Fatalf("status without a session: %d", w.Code)
	}
}

func TestWrongPasswordAndUnknownUserRefused(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{`{"user":"olga","password":"nope"}`, `{"user":"nobody","password":"` + opPass + `"}`, `{"user":"olga","password":"` + viewerPass + `"}`} {
		w := f.do(call{method: "POST", path: "/ui/api/login", body: body})
		if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
			t.Errorf("%s: %d, cookies %v; want 401 and no cookie", body, w.Code, w.Result().Cookies())
		}
	}
	n := 0
	for _, e := range f.audit {
		if e.Action == "dashboard login" && e.Status == 401 {
			n++
		}
		if strings.Contains(e.Body, opPass) {
			t.Errorf("audit entry holds a password: %+v", e)
		}
	}
	if n != 3 {
		t.Errorf("%d failed logins audited, want 3", n)
	}
}

func TestLoginRateLimited(t *testing.T) {
	f := newFixture(t)
	bad := `{"user":"olga","password":"nope"}`
	for i := range 5 {
		if w := f.do(call{method: "POST", path: "/ui/api/login", body: bad, remote: "10.0.0.1:1000"}); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, w.Code)
		}
	}
	// Locked: even the right password is refused, from any address.
	w := f.do(call{method: "POST", path: "/ui/api/login", body: `{"user":"olga","password":"` + opPass + `"}`, remote: "10.0.0.2:1000"})
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after 5 failures: %d, Retry-After %q; want 429 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	// The address is locked for other users too.
	w = f.do(call{method: "POST", path: "/ui/api/login", body: `{"user":"vic","password":"` + viewerPass + `"}`, remote: "10.0.0.1:2000"})
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("same address, other user: %d; want 429", w.Code)
	}
	// Another user from another address is not affected.
	if w := f.do(call{method: "POST", path: "/ui/api/login", body: `{"user":"vic","password":"` + viewerPass + `"}`, remote: "10.0.0.3:1000"}); w.Code != 200 {
		t.Fatalf("unrelated login: %d", w.Code)
	}
	f.clock.Add(31 * time.Second)
	if w := f.do(call{method: "POST", path: "/ui/api/login", body: `{"user":"olga","password":"` + opPass + `"}`, remote: "10.0.0.1:1000"}); w.Code != 200 {
		t.Fatalf("after the lockout: %d %s", w.Code, w.Body)
	}
}

func TestSessionExpiresAndLogout(t *testing.T) {
	f := newFixture(t)
	cookie, csrf := f.login("olga", opPass)
	if w := f.do(call{method: "POST", path: "/ui/api/logout", body: `{}`, cookie: cookie}); w.Code != http.StatusForbidden {
		t.Fatalf("logout without CSRF: %d", w.Code)
	}
	if w := f.do(call{method: "POST", path: "/ui/api/logout", body: `{}`, cookie: cookie, csrf: csrf}); w.Code != 200 {
		t.Fatalf("logout: %d", w.Code)
	}
	if w := f.do(call{method: "GET", path: "/ui/api/status", cookie: cookie}); w.Code != http.StatusUnauthorized {
		t.Fatalf("status after logout: %d", w.Code)
	}
	cookie, _ = f.login("olga", opPass)
	f.clock.Add(time.Hour)
	if w := f.do(call{method: "GET", path: "/ui/api/status", cookie: cookie}); w.Code != http.StatusUnauthorized {
		t.Fatalf("status after the session's TTL: %d", w.Code)
	}
}

func TestActionsNeedCSRFOperatorAndPassword(t *testing.T) {
	f := newFixture(t)
	op, opCSRF := f.login("olga", opPass)
	viewer, viewerCSRF := f.login("vic", viewerPass)
	body := `{"node":"b","on":true,"password":"` + opPass + `"}`
	for _, tc := range []struct {
		name string
		c    call
		code int
	}{
		{"no session", call{body: body}, http.StatusUnauthorized},
		{"no CSRF token", call{body: body, cookie: op}, http.StatusForbidden},
		{"wrong CSRF token", call{body: body, cookie: op, csrf: viewerCSRF}, http.StatusForbidden},
		{"viewer", call{body: `{"node":"b","on":true,"password":"` + viewerPass + `"}`, cookie: viewer, csrf: viewerCSRF}, http.StatusForbidden},
		{"no password", call{body: `{"node":"b","on":true}`, cookie: op, csrf: opCSRF}, http.StatusBadRequest},
		{"wrong password", call{body: `{"node":"b","on":true,"password":"nope"}`, cookie: op, csrf: opCSRF}, http.StatusForbidden},
		{"cross-origin", call{body: body, cookie: op, csrf: opCSRF, headers: map[string]string{"Origin": "http://evil.example"}}, http.StatusForbidden},
		{"cross-site fetch", call{body: body, cookie: op, csrf: opCSRF, headers: map[string]string{"Sec-Fetch-Site": "cross-site"}}, http.StatusForbidden},
		{"form post", call{body: body, cookie: op, csrf: opCSRF, headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, http.StatusUnsupportedMediaType},
	} {
		tc.c.method, tc.c.path = "POST", "/ui/api/maintenance"
		if w := f.do(tc.c); w.Code != tc.code {
			t.Errorf("%s: %d %s; want %d", tc.name, w.Code, strings.TrimSpace(w.Body.String()), tc.code)
		}
	}
	if calls := f.agent.called(); len(calls) != 0 {
		t.Fatalf("refused requests reached the agent: %v", calls)
	}
	w := f.do(call{method: "POST", path: "/ui/api/maintenance", body: body, cookie: op, csrf: opCSRF, headers: map[string]string{"Origin": "http://example.com", "Sec-Fetch-Site": "same-origin"}})
	if w.Code != 200 {
		t.Fatalf("maintenance: %d %s", w.Code, w.Body)
	}
	if calls := f.agent.called(); len(calls) != 1 || calls[0] != "maintenance b true" {
		t.Fatalf("agent calls %v", calls)
	}
	var ok bool
	for _, e := range f.audit {
		if e.Action == "dashboard maintenance" && e.Status == 200 {
			ok = true
			if strings.Contains(e.Body, "password") || !strings.Contains(e.Who, "olga") {
				t.Errorf("audit entry %+v: must name olga and hold no password", e)
			}
		}
	}
	if !ok {
		t.Error("the action is not in the audit log")
	}
	// Five wrong confirmations lock the operator out of actions.
	for range 5 {
		f.do(call{method: "POST", path: "/ui/api/maintenance", body: `{"node":"b","on":true,"password":"nope"}`, cookie: op, csrf: opCSRF})
	}
	if w := f.do(call{method: "POST", path: "/ui/api/maintenance", body: body, cookie: op, csrf: opCSRF}); w.Code != http.StatusTooManyRequests {
		t.Fatalf("after 5 wrong confirmations: %d; want 429", w.Code)
	}
}

func TestServiceActions(t *testing.T) {
	f := newFixture(t)
	op, csrf := f.login("olga", opPass)
	post := func(body string) *httptest.ResponseRecorder {
		return f.do(call{method: "POST", path: "/ui/api/service", body: body, cookie: op, csrf: csrf})
	}
	// The active's service only through a switchover.
	if w := post(`{"node":"a","action":"stop","password":"` + opPass + `"}`); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "switchover") {
		t.Fatalf("stop on the active: %d %s", w.Code, w.Body)
	}
	// Another node's service goes to its agent's API with the token.
	w := post(`{"node":"b","action":"restart","password":"` + opPass + `"}`)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"pid":43`) {
		t.Fatalf("restart on b: %d %s", w.Code, w.Body)
	}
	f.auditM.Lock()
	req := f.remReq[len(f.remReq)-1]
	f.auditM.Unlock()
	if req.URL.Path != "/v1/service" || !strings.Contains(req.Header.Get(api.WhoHeader), "olga") {
		t.Fatalf("remote request %s %v", req.URL.Path, req.Header)
	}
	// All standbys: b (remote) now that a is no longer active, and a (local).
	f.agent.setRole("a", ha.RoleStandby)
	w = post(`{"all":true,"action":"start","password":"` + opPass + `"}`)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"node":"a"`) || !strings.Contains(w.Body.String(), `"node":"b"`) || strings.Contains(w.Body.String(), `"node":"w"`) {
		t.Fatalf("start on all standbys: %d %s", w.Code, w.Body)
	}
	if w := post(`{"node":"w","action":"start","password":"` + opPass + `"}`); w.Code != http.StatusConflict {
		t.Fatalf("service on a witness: %d", w.Code)
	}
	if w := post(`{"node":"b","action":"explode","password":"` + opPass + `"}`); w.Code != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", w.Code)
	}
}

func TestLogsFromAnyNode(t *testing.T) {
	f := newFixture(t)
	op, _ := f.login("olga", opPass)
	w := f.do(call{method: "GET", path: "/ui/api/logs?node=a&lines=5", cookie: op})
	if w.Code != 200 || w.Body.String() != "log of a, 5 lines\n" {
		t.Fatalf("local log: %d %q", w.Code, w.Body)
	}
	w = f.do(call{method: "GET", path: "/ui/api/logs/download?node=b", cookie: op})
	if w.Code != 200 || w.Body.String() != "log of b\n" || !strings.Contains(w.Header().Get("Content-Disposition"), `attachment; filename="haven-test-b-`) {
		t.Fatalf("remote download: %d %q %v", w.Code, w.Body, w.Header())
	}
	if w := f.do(call{method: "GET", path: "/ui/api/logs?node=zz", cookie: op}); w.Code != http.StatusNotFound {
		t.Fatalf("unknown node: %d", w.Code)
	}
}

// TestViewersCannotReadLogs: logs may hold sensitive data, so viewers get
// 403 with a reason, no other agent is asked, and the attempt is audited;
// the status, the timeline and the configuration stay open to them.
func TestViewersCannotReadLogs(t *testing.T) {
	f := newFixture(t)
	viewer, _ := f.login("vic", viewerPass)
	for _, path := range []string{"/ui/api/logs/download?node=b", "/ui/api/logs/download", "/ui/api/logs?node=b&lines=5", "/ui/api/logs?node=a"} {
		w := f.do(call{method: "GET", path: path, cookie: viewer})
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "needs an operator") || strings.Contains(w.Body.String(), "log of") {
			t.Errorf("%s as a viewer: %d %s; want 403 saying an operator is needed", path, w.Code, w.Body)
		}
	}
	f.auditM.Lock()
	asked := len(f.remReq)
	var refused int
	for _, e := range f.audit {
		if e.Action == "dashboard download logs" && e.Status == http.StatusForbidden && strings.Contains(e.Who, "vic") {
			refused++
		}
	}
	f.auditM.Unlock()
	if asked != 0 {
		t.Errorf("a viewer's log request reached another agent %d times", asked)
	}
	if refused != 2 {
		t.Errorf("%d refused downloads in the audit log, want 2: %+v", refused, f.audit)
	}
	for _, path := range []string{"/ui/api/status", "/ui/api/events", "/ui/api/config"} {
		if w := f.do(call{method: "GET", path: path, cookie: viewer}); w.Code != 200 {
			t.Errorf("%s as a viewer: %d %s", path, w.Code, w.Body)
		}
	}
}

func TestConfigViewMasksSecrets(t *testing.T) {
	f := newFixture(t)
	f.h.o.Config.Service.Command = []string{"/bin/svc"}
	f.h.o.Config.Service.Env = map[string]string{"DB_PASSWORD": "hunter2-secret", "MODE": "prod"}
	viewer, _ := f.login("vic", viewerPass)
	w := f.do(call{method: "GET", path: "/ui/api/config", cookie: viewer})
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, "token set (hidden)") || !strings.Contains(body, "user olga") {
		t.Fatalf("config: %d\n%s", w.Code, body)
	}
	for _, secret := range []string{apiToken, "$2a$", "hunter2-secret"} {
		if strings.Contains(body, secret) {
			t.Errorf("config view shows %q:\n%s", secret, body)
		}
	}
	if !strings.Contains(body, "MODE=prod") {
		t.Errorf("config view masks too much:\n%s", body)
	}
}

func TestAliasesPersist(t *testing.T) {
	f := newFixture(t)
	op, csrf := f.login("olga", opPass)
	w := f.do(call{method: "POST", path: "/ui/api/alias", body: `{"node":"b","alias":"rack 2, left","password":"` + opPass + `"}`, cookie: op, csrf: csrf})
	if w.Code != 200 {
		t.Fatalf("alias: %d %s", w.Code, w.Body)
	}
	again := loadAliases(f.h.o.Dir, f.h.o.Log)
	if again.all()["b"] != "rack 2, left" {
		t.Fatalf("alias not saved: %v", again.all())
	}
	w = f.do(call{method: "GET", path: "/ui/api/status", cookie: op})
	if !strings.Contains(w.Body.String(), `"aliases":{"b":"rack 2, left"},"aliases_shared":false`) {
		t.Fatalf("status lacks the alias: %s", w.Body)
	}
}

// sharedAliases is a store that keeps aliases: SetAlias changes what the
// agent's status reports, as the watch would.
type sharedAliases struct{ f *fakeAgent }

func (s sharedAliases) AliasesShared() bool { return true }
func (s sharedAliases) SetAlias(_ context.Context, node, alias string) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	for i := range s.f.st.Nodes {
		if s.f.st.Nodes[i].Name == node {
			s.f.st.Nodes[i].Alias = alias
		}
	}
	s.f.calls = append(s.f.calls, "alias "+node+" "+alias)
	return nil
}

// TestAliasesShared: with a store that keeps aliases, setting one goes to
// the store (not this dashboard's file), the status shows the store's, and
// it is an action like the others: operator, CSRF, password, audited.
func TestAliasesShared(t *testing.T) {
	f := newFixture(t)
	f.h = New(Options{
		Config: f.h.o.Config, Node: "a", Source: f.agent, Operator: f.agent, Logs: f.agent, Aliases: sharedAliases{f.agent},
		Audit: func(e api.AuditEntry) { f.auditM.Lock(); f.audit = append(f.audit, e); f.auditM.Unlock() },
		Now:   f.clock.Now, Dir: f.h.o.Dir,
	})
	op, csrf := f.login("olga", opPass)
	viewer, vcsrf := f.login("vic", viewerPass)
	post := func(cookie *http.Cookie, csrf, body string) *httptest.ResponseRecorder {
		return f.do(call{method: "POST", path: "/ui/api/alias", body: body, cookie: cookie, csrf: csrf})
	}
	if w := post(viewer, vcsrf, `{"node":"b","alias":"x","password":"`+viewerPass+`"}`); w.Code != http.StatusForbidden {
		t.Fatalf("a viewer's alias: %d", w.Code)
	}
	if w := post(op, "", `{"node":"b","alias":"x","password":"`+opPass+`"}`); w.Code != http.StatusForbidden {
		t.Fatalf("an alias without the CSRF token: %d", w.Code)
	}
	if w := post(op, csrf, `{"node":"b","alias":"x","password":"nope"}`); w.Code != http.StatusForbidden {
		t.Fatalf("an alias with a wrong password: %d", w.Code)
	}
	if w := post(op, csrf, `{"node":"b","alias":"`+strings.Repeat("y", 65)+`","password":"`+opPass+`"}`); w.Code != http.StatusBadRequest {
		t.Fatalf("a 65-character alias: %d", w.Code)
	}
	if calls := f.agent.called(); len(calls) != 0 {
		t.Fatalf("refused aliases reached the store: %v", calls)
	}
	w := post(op, csrf, `{"node":"b","alias":"  east wing  ","password":"`+opPass+`"}`)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"shared":true`) {
		t.Fatalf("alias: %d %s", w.Code, w.Body)
	}
	if calls := f.agent.called(); len(calls) != 1 || calls[0] != "alias b east wing" {
		t.Fatalf("store calls %v", calls)
	}
	if got := loadAliases(f.h.o.Dir, f.h.o.Log).all(); len(got) != 0 {
		t.Fatalf("a shared alias went to the local file too: %v", got)
	}
	w = f.do(call{method: "GET", path: "/ui/api/status", cookie: viewer})
	if !strings.Contains(w.Body.String(), `"aliases":{"b":"east wing"},"aliases_shared":true`) {
		t.Fatalf("status lacks the shared alias: %s", w.Body)
	}
	var audited bool
	f.auditM.Lock()
	for _, e := range f.audit {
		audited = audited || (e.Action == "dashboard alias" && e.Status == 200 && strings.Contains(e.Body, "east wing") && !strings.Contains(e.Body, opPass))
	}
	f.auditM.Unlock()
	if !audited {
		t.Fatalf("the alias is not in the audit log: %+v", f.audit)
	}
}

// TestStreamSendsChanges: the event stream sends the status at once and
// again when a role changes, and ends when the handler closes.
func TestStreamSendsChanges(t *testing.T) {
	f := newFixture(t)
	f.h.o.Now = time.Now // the stream checks the session against the clock
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	jar := &http.Client{}
	resp, err := jar.Post(srv.URL+"/ui/api/login", "application/json", strings.NewReader(`{"user":"vic","password":"`+viewerPass+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/ui/events/stream", nil)
	req.AddCookie(resp.Cookies()[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- data
			}
		}
		close(events)
	}()
	next := func() api.Status {
		t.Helper()
		select {
		case data, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			var st api.Status
			if err := json.Unmarshal([]byte(data), &st); err != nil {
				t.Fatal(err)
			}
			return st
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
		}
		return api.Status{}
	}
	if st := next(); st.Nodes[1].Role != ha.RoleStandby {
		t.Fatalf("first event: %+v", st)
	}
	start := time.Now()
	f.agent.setRole("b", ha.RoleActive)
	if st := next(); st.Nodes[1].Role != ha.RoleActive {
		t.Fatalf("second event: %+v", st)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the change took %s to arrive", d)
	}
	f.h.Close()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the stream did not end on Close")
		}
	}
}

func TestDisabledDashboardSaysHowToEnable(t *testing.T) {
	h := New(Options{Config: &config.Config{}, Node: "a"})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/ui/", nil))
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "dashboard:") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func TestPageAndAssetsServed(t *testing.T) {
	f := newFixture(t)
	for path, want := range map[string]string{"/ui/": "<title>haven dashboard</title>", "/ui/assets/app.js": "EventSource", "/ui/assets/app.css": "focus-visible"} {
		w := f.do(call{method: "GET", path: path})
		if w.Code != 200 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d, lacks %q", path, w.Code, want)
		}
	}
}
