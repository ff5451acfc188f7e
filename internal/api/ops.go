package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// SwitchoverRequest is the body of POST /v1/switchover.
type SwitchoverRequest struct {
	To     string `json:"to,omitempty"` // empty: the best eligible standby
	Force  bool   `json:"force,omitempty"`
	Reason string `json:"reason,omitempty"`
	Who    string `json:"-"`
}

// PromoteRequest is the body of POST /v1/promote.
type PromoteRequest struct {
	Node  string `json:"node"`
	Force bool   `json:"force,omitempty"`
	Who   string `json:"-"`
}

// SwitchoverResult reports a completed switchover or promotion.
type SwitchoverResult struct {
	From   string   `json:"from"`
	To     string   `json:"to"`
	Epoch  ha.Epoch `json:"epoch"`
	TookMS float64  `json:"took_ms"` // from the request to the target serving
}

// MaintenanceRequest is the body of POST /v1/maintenance.
type MaintenanceRequest struct {
	Node string `json:"node"`
	On   bool   `json:"on"`
	Who  string `json:"-"`
}

// MaintenanceResult reports a maintenance change.
type MaintenanceResult struct {
	Node       string            `json:"node"`
	On         bool              `json:"on"`
	Switchover *SwitchoverResult `json:"switchover,omitempty"`
}

// ServiceRequest is the body of POST /v1/service (acts on the receiving node).
type ServiceRequest struct {
	Action string `json:"action"` // start, stop, restart
	Force  bool   `json:"force,omitempty"`
	Who    string `json:"-"`
}

// ServiceResult reports a service action.
type ServiceResult struct {
	Node       string            `json:"node"`
	Action     string            `json:"action"`
	PID        int               `json:"pid"`
	Switchover *SwitchoverResult `json:"switchover,omitempty"`
}

// FailsafeRequest is what an active node that cannot reach the store asks
// its peers (POST /v1/failsafe).
type FailsafeRequest struct {
	From    string   `json:"from"`
	Epoch   ha.Epoch `json:"epoch"`
	GrantMS int64    `json:"grant_ms"`
}

// FailsafeResult is a peer's answer: NotActive means it is not active and
// promises not to take over for the grant.
type FailsafeResult struct {
	Node      string  `json:"node"`
	NotActive bool    `json:"not_active"`
	Role      ha.Role `json:"role"`
}

// MembersRequest is the body of POST /v1/members.
type MembersRequest struct {
	Action string `json:"action"` // add or remove
	Node   string `json:"node"`
	Who    string `json:"-"`
}

// Operator carries out the operators' requests.
type Operator interface {
	Switchover(ctx context.Context, req SwitchoverRequest) (SwitchoverResult, error)
	Promote(ctx context.Context, req PromoteRequest) (SwitchoverResult, error)
	Maintenance(ctx context.Context, req MaintenanceRequest) (MaintenanceResult, error)
	ServiceControl(ctx context.Context, req ServiceRequest) (ServiceResult, error)
	Events(ctx context.Context, limit int) ([]ha.Event, error)
	Failsafe(ctx context.Context, req FailsafeRequest) (FailsafeResult, error)
	Members(ctx context.Context) ([]ha.Member, error)
	ChangeMembers(ctx context.Context, req MembersRequest) ([]ha.Member, error)
}

// AuditEntry is one mutating call, written to the audit log.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`
	Remote string    `json:"remote"`
	Action string    `json:"action"`
	Body   string    `json:"body,omitempty"`
	Status int       `json:"status"`
	Result string    `json:"result"`
}

// Options configure the protected part of the API.
type Options struct {
	Token      string // bearer token for mutating calls; empty disables them
	StatusOpen bool   // reads (/status, /v1/events) need no token
	Audit      func(AuditEntry)

	// RedirectPaths answer 307 to RedirectTarget()'s base URL + the path.
	RedirectPaths  []string
	RedirectTarget func() (base string, ok bool)
}

// WhoHeader names the operator on whose behalf a call is made (for the
// audit log; authentication is the token).
const WhoHeader = "X-Haven-Who"

const maxBody = 64 << 10

// StatusOf is the one table from error kinds to HTTP status codes (the
// dashboard uses it too).
func StatusOf(err error) int {
	switch ha.KindOf(err) {
	case ha.KindInvalid:
		return http.StatusBadRequest
	case ha.KindNotFound:
		return http.StatusNotFound
	case ha.KindConflict:
		return http.StatusConflict
	case ha.KindUnavailable:
		return http.StatusServiceUnavailable
	case ha.KindUnauthorized:
		return http.StatusUnauthorized
	case ha.KindForbidden:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func (o Options) authorized(r *http.Request) error {
	if o.Token == "" {
		return ha.Errorf(ha.KindForbidden, "operator actions are disabled: set api.token (or api.token_file) in the config on every node")
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return ha.Errorf(ha.KindUnauthorized, "missing bearer token: send `Authorization: Bearer <api.token>` (the CLI reads it from --config)")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(o.Token)) != 1 {
		return ha.Errorf(ha.KindUnauthorized, "wrong token")
	}
	return nil
}

func registerOps(mux *http.ServeMux, src Source, op Operator, o Options) {
	read := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !o.StatusOpen {
				if err := o.authorized(r); err != nil {
					WriteError(w, StatusOf(err), err.Error())
					return
				}
			}
			h(w, r)
		}
	}
	mutating := func(action string, do func(r *http.Request, body []byte, who string) (any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			who := r.Header.Get(WhoHeader)
			if who == "" {
				who = "unknown"
			}
			entry := AuditEntry{Time: time.Now(), Who: who, Remote: r.RemoteAddr, Action: action}
			var (
				res  any
				err  error
				body []byte
			)
			if err = o.authorized(r); err == nil {
				body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
				if err != nil {
					err = ha.Errorf(ha.KindInvalid, "request body: %v (at most %d bytes of JSON)", err, maxBody)
				} else {
					entry.Body = string(body)
					res, err = do(r, body, who)
				}
			}
			code := http.StatusOK
			if err != nil {
				code = StatusOf(err)
				entry.Result = err.Error()
			} else {
				entry.Result = "ok"
			}
			entry.Status = code
			if o.Audit != nil {
				o.Audit(entry)
			}
			if err != nil {
				WriteError(w, code, err.Error())
				return
			}
			writeJSON(w, code, res)
		}
	}
	mux.HandleFunc("GET /status", read(func(w http.ResponseWriter, r *http.Request) {
		st := src.Status()
		knownLeader(w, !st.LeaderIsUnknown())
		writeJSON(w, http.StatusOK, st)
	}))
	mux.HandleFunc("GET /v1/events", read(func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 2000 {
				WriteError(w, http.StatusBadRequest, "limit must be a whole number from 1 to 2000")
				return
			}
			limit = n
		}
		evs, err := op.Events(r.Context(), limit)
		if err != nil {
			WriteError(w, StatusOf(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, evs)
	}))
	mux.HandleFunc("POST /v1/switchover", mutating("switchover", func(r *http.Request, body []byte, who string) (any, error) {
		var req SwitchoverRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		req.Who = who
		return op.Switchover(r.Context(), req)
	}))
	mux.HandleFunc("POST /v1/promote", mutating("promote", func(r *http.Request, body []byte, who string) (any, error) {
		var req PromoteRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		if req.Node == "" {
			return nil, ha.Errorf(ha.KindInvalid, `"node" is required: the node to promote`)
		}
		req.Who = who
		return op.Promote(r.Context(), req)
	}))
	mux.HandleFunc("POST /v1/maintenance", mutating("maintenance", func(r *http.Request, body []byte, who string) (any, error) {
		var req MaintenanceRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		if req.Node == "" {
			return nil, ha.Errorf(ha.KindInvalid, `"node" is required`)
		}
		req.Who = who
		return op.Maintenance(r.Context(), req)
	}))
	mux.HandleFunc("GET /v1/members", read(func(w http.ResponseWriter, r *http.Request) {
		list, err := op.Members(r.Context())
		if err != nil {
			WriteError(w, StatusOf(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, list)
	}))
	mux.HandleFunc("POST /v1/members", mutating("members", func(r *http.Request, body []byte, who string) (any, error) {
		var req MembersRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		if req.Node == "" {
			return nil, ha.Errorf(ha.KindInvalid, `"node" is required`)
		}
		req.Who = who
		return op.ChangeMembers(r.Context(), req)
	}))
	mux.HandleFunc("POST /v1/failsafe", mutating("failsafe", func(r *http.Request, body []byte, who string) (any, error) {
		var req FailsafeRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return op.Failsafe(r.Context(), req)
	}))
	mux.HandleFunc("POST /v1/service", mutating("service", func(r *http.Request, body []byte, who string) (any, error) {
		var req ServiceRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		req.Who = who
		return op.ServiceControl(r.Context(), req)
	}))
}

// decode parses a JSON body strictly.
func decode(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return ha.Errorf(ha.KindInvalid, "request body is not valid JSON at byte %d: %v", se.Offset, err)
		}
		return ha.Errorf(ha.KindInvalid, "request body: %v", err)
	}
	if dec.More() {
		return ha.Errorf(ha.KindInvalid, "request body has data after the JSON object")
	}
	return nil
}
