package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
)

const (
	cookiePrefix = "haven_session"
	csrfHeader   = "X-CSRF-Token"
	maxSessions  = 1000
)

// cookieName names this node's session cookie. Browsers keep cookies per
// host, not per port, so with one name the dashboards of two nodes on one
// host (haven demo, or following the link to the active's dashboard there)
// would overwrite each other's session.
func (h *Handler) cookieName() string {
	if h.o.Node == "" {
		return cookiePrefix
	}
	return cookiePrefix + "_" + h.o.Node
}

// session is one logged-in browser. Sessions live in the agent's memory:
// they end when it restarts, and each node's dashboard has its own.
type session struct {
	id, user, role, csrf string
	expires              time.Time
}

type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func newSessions() *sessions { return &sessions{m: map[string]*session{}} }

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *sessions) create(user, role string, now time.Time, ttl time.Duration) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, x := range s.m {
		if !now.Before(x.expires) {
			delete(s.m, id)
		}
	}
	if len(s.m) >= maxSessions {
		// Drop the session closest to its end rather than refuse a login.
		var oldest *session
		for _, x := range s.m {
			if oldest == nil || x.expires.Before(oldest.expires) {
				oldest = x
			}
		}
		delete(s.m, oldest.id)
	}
	x := &session{id: randomToken(), user: user, role: role, csrf: randomToken(), expires: now.Add(ttl)}
	s.m[x.id] = x
	return x
}

func (s *sessions) get(id string, now time.Time) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.m[id]
	if !ok {
		return nil, false
	}
	if !now.Before(x.expires) {
		delete(s.m, id)
		return nil, false
	}
	return x, true
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// limiter counts failed password checks per key (a client address or a
// user name); max failures in a row lock the key out for lockout.
type limiter struct {
	mu      sync.Mutex
	max     int
	lockout time.Duration
	m       map[string]*failures
}

type failures struct {
	count int
	last  time.Time
	until time.Time
}

func newLimiter(max int, lockout time.Duration) *limiter {
	return &limiter{max: max, lockout: lockout, m: map[string]*failures{}}
}

// locked reports how long key stays locked out.
func (l *limiter) locked(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.m[key]
	if !ok || !now.Before(f.until) {
		return 0, false
	}
	return f.until.Sub(now), true
}

func (l *limiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > 10000 {
		for k, f := range l.m {
			if now.Sub(f.last) > 15*time.Minute {
				delete(l.m, k)
			}
		}
	}
	f, ok := l.m[key]
	if !ok || now.Sub(f.last) > 15*time.Minute {
		f = &failures{}
		l.m[key] = f
	}
	f.count++
	f.last = now
	if f.count >= l.max {
		f.count = 0
		f.until = now.Add(l.lockout)
	}
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// dummyHash is compared against when the user is unknown, at the cost of
// the configured hashes, so that the answer's timing does not tell which
// user names exist.
func dummyHash(d config.Dashboard) []byte {
	cost := bcrypt.DefaultCost
	if len(d.Users) > 0 {
		if c, err := bcrypt.Cost([]byte(d.Users[0].PasswordHash)); err == nil {
			cost = c
		}
	}
	h, _ := bcrypt.GenerateFromPassword([]byte(randomToken()), cost)
	return h
}

// denial is why a password check failed: the status to answer with, a
// message, and for a lockout how long it lasts.
type denial struct {
	code  int
	msg   string
	retry time.Duration
}

func (d *denial) write(w http.ResponseWriter) {
	if d.retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(d.retry.Seconds())+1))
	}
	api.WriteError(w, d.code, d.msg)
}

// checkPassword verifies user's password, subject to the rate limits.
func (h *Handler) checkPassword(r *http.Request, user, password string) (config.DashboardUser, *denial) {
	now := h.o.Now()
	ipKey, userKey := "ip "+clientIP(r), "user "+user
	for _, k := range []string{ipKey, userKey} {
		if d, ok := h.limiter.locked(k, now); ok {
			return config.DashboardUser{}, &denial{http.StatusTooManyRequests, "too many wrong passwords; try again in " + strconv.Itoa(int(d.Seconds())+1) + "s", d}
		}
	}
	u, known := h.d.User(user)
	hash := h.dummy
	if known {
		hash = []byte(u.PasswordHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !known {
		h.limiter.fail(ipKey, now)
		h.limiter.fail(userKey, now)
		return config.DashboardUser{}, &denial{code: http.StatusUnauthorized, msg: "wrong user name or password"}
	}
	h.limiter.reset(ipKey)
	h.limiter.reset(userKey)
	return u, nil
}

func (h *Handler) secure(r *http.Request) bool {
	switch h.d.SecureCookies {
	case "always":
		return true
	case "never":
		return false
	}
	return r.TLS != nil
}

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// sessionView is what the page learns about its session.
type sessionView struct {
	User    string `json:"user"`
	Role    string `json:"role"`
	CSRF    string `json:"csrf"`
	Node    string `json:"node"`
	Cluster string `json:"cluster"`
	Expires int64  `json:"expires"` // unix ms
}

func (h *Handler) view(s *session) sessionView {
	v := sessionView{User: s.user, Role: s.role, CSRF: s.csrf, Node: h.o.Node, Expires: s.expires.UnixMilli()}
	if h.o.Config != nil {
		v.Cluster = h.o.Config.Cluster
	}
	return v
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.User == "" || len(req.User) > 64 || len(req.Password) > 1024 {
		api.WriteError(w, http.StatusBadRequest, `send {"user": ..., "password": ...}`)
		return
	}
	u, d := h.checkPassword(r, req.User, req.Password)
	if d != nil {
		h.audit(r, h.who(req.User), "login", "", d.code, d.msg)
		d.write(w)
		return
	}
	s := h.sessions.create(u.Name, u.Role, h.o.Now(), h.d.SessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name: h.cookieName(), Value: s.id, Path: "/ui/",
		MaxAge:   int(h.d.SessionTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: h.secure(r),
	})
	h.audit(r, h.who(u.Name), "login", "", http.StatusOK, "ok ("+u.Role+")")
	writeJSON(w, http.StatusOK, h.view(s))
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	s, ok := h.current(r)
	if !ok {
		api.WriteError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	if !h.csrfOK(r, s) {
		api.WriteError(w, http.StatusForbidden, "missing or wrong CSRF token; reload the page")
		return
	}
	h.sessions.delete(s.id)
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(), Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: h.secure(r)})
	h.audit(r, h.who(s.user), "logout", "", http.StatusOK, "ok")
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// session answers who is logged in (401 when nobody), with the CSRF token
// the page must send on every POST.
func (h *Handler) session(w http.ResponseWriter, r *http.Request) {
	s, ok := h.current(r)
	if !ok {
		api.WriteError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	writeJSON(w, http.StatusOK, h.view(s))
}

func (h *Handler) current(r *http.Request) (*session, bool) {
	c, err := r.Cookie(h.cookieName())
	if err != nil || c.Value == "" {
		return nil, false
	}
	return h.sessions.get(c.Value, h.o.Now())
}

func (h *Handler) csrfOK(r *http.Request, s *session) bool {
	t := r.Header.Get(csrfHeader)
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.csrf)) == 1
}

// viewer guards a read: any logged-in user.
func (h *Handler) viewer(next func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := h.current(r)
		if !ok {
			api.WriteError(w, http.StatusUnauthorized, "not logged in; log in at /ui/")
			return
		}
		next(w, r, s)
	}
}

// operatorRead guards a read that viewers may not make: the agents' logs,
// which can hold what the masked configuration hides (addresses, hook and
// service output, a credential in an error message). A viewer's attempt is
// refused with 403 and audited as what.
func (h *Handler) operatorRead(what string, next func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return h.viewer(func(w http.ResponseWriter, r *http.Request, s *session) {
		if s.role != config.RoleOperator {
			msg := s.user + " is a viewer; logs may hold sensitive data, so reading and downloading them needs an operator login"
			h.audit(r, h.who(s.user), what, r.URL.Query().Get("node"), http.StatusForbidden, msg)
			api.WriteError(w, http.StatusForbidden, msg)
			return
		}
		next(w, r, s)
	})
}

// actionFunc carries out one action for an operator whose password has
// been checked; body is the request without the password.
type actionFunc func(r *http.Request, s *session, body json.RawMessage) (any, error)

// action guards a mutating request: a session, its CSRF token, the
// operator role and the re-typed password; then it runs do and audits.
func (h *Handler) action(name string, do actionFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := h.current(r)
		if !ok {
			h.audit(r, "unknown (dashboard on "+h.o.Node+")", name, "", http.StatusUnauthorized, "not logged in")
			api.WriteError(w, http.StatusUnauthorized, "not logged in; log in at /ui/")
			return
		}
		who := h.who(s.user)
		fail := func(code int, msg, body string) {
			h.audit(r, who, name, body, code, msg)
			api.WriteError(w, code, msg)
		}
		if !h.csrfOK(r, s) {
			fail(http.StatusForbidden, "missing or wrong CSRF token; reload the page", "")
			return
		}
		if s.role != config.RoleOperator {
			fail(http.StatusForbidden, s.user+" is a viewer; only operators may act", "")
			return
		}
		var raw map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
			fail(http.StatusBadRequest, "the request body is not a JSON object", "")
			return
		}
		var password string
		if p, ok := raw["password"]; ok {
			_ = json.Unmarshal(p, &password)
		}
		delete(raw, "password")
		body, _ := json.Marshal(raw)
		if password == "" {
			fail(http.StatusBadRequest, "confirm the action with your password", string(body))
			return
		}
		if _, d := h.checkPassword(r, s.user, password); d != nil {
			if d.code == http.StatusUnauthorized {
				d.code, d.msg = http.StatusForbidden, "the password does not match; the action was not carried out"
			}
			h.audit(r, who, name, string(body), d.code, d.msg)
			d.write(w)
			return
		}
		res, err := do(r, s, body)
		if err != nil {
			code := statusOf(err)
			fail(code, err.Error(), string(body))
			return
		}
		h.audit(r, who, name, string(body), http.StatusOK, "ok")
		writeJSON(w, http.StatusOK, res)
	}
}
