package web

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

// actionTimeout bounds an action. Actions run detached from the request:
// a browser that goes away must not cancel a switchover half-way.
const actionTimeout = 30 * time.Second

func detached(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), actionTimeout)
}

func decodeBody(body json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return ha.Errorf(ha.KindInvalid, "request: %v", err)
	}
	return nil
}

func (h *Handler) needOperator() error {
	if h.o.Operator == nil {
		return ha.Errorf(ha.KindForbidden, "this agent takes no operator actions")
	}
	return nil
}

func (h *Handler) switchover(r *http.Request, s *session, body json.RawMessage) (any, error) {
	var req struct {
		To string `json:"to"`
	}
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	if err := h.needOperator(); err != nil {
		return nil, err
	}
	ctx, cancel := detached(r)
	defer cancel()
	return h.o.Operator.Switchover(ctx, api.SwitchoverRequest{To: req.To, Reason: "requested on the dashboard by " + s.user, Who: h.who(s.user)})
}

func (h *Handler) maintenance(r *http.Request, s *session, body json.RawMessage) (any, error) {
	var req struct {
		Node string `json:"node"`
		On   bool   `json:"on"`
	}
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	if req.Node == "" {
		return nil, ha.Errorf(ha.KindInvalid, "name the node")
	}
	if err := h.needOperator(); err != nil {
		return nil, err
	}
	ctx, cancel := detached(r)
	defer cancel()
	return h.o.Operator.Maintenance(ctx, api.MaintenanceRequest{Node: req.Node, On: req.On, Who: h.who(s.user)})
}

func (h *Handler) promote(r *http.Request, s *session, body json.RawMessage) (any, error) {
	var req struct {
		Node  string `json:"node"`
		Force bool   `json:"force"`
	}
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	if req.Node == "" {
		return nil, ha.Errorf(ha.KindInvalid, "name the node to promote")
	}
	if err := h.needOperator(); err != nil {
		return nil, err
	}
	ctx, cancel := detached(r)
	defer cancel()
	return h.o.Operator.Promote(ctx, api.PromoteRequest{Node: req.Node, Force: req.Force, Who: h.who(s.user)})
}

// serviceResult is one node's outcome of a service action.
type serviceResult struct {
	Node  string `json:"node"`
	OK    bool   `json:"ok"`
	PID   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// service starts, stops or restarts the service on one standby or on every
// standby. The active's service is left alone: it is stopped only through a
// switchover, so that clients are never cut off by a click.
func (h *Handler) service(r *http.Request, s *session, body json.RawMessage) (any, error) {
	var req struct {
		Node   string `json:"node"`
		All    bool   `json:"all"`
		Action string `json:"action"`
	}
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	switch req.Action {
	case "start", "stop", "restart":
	default:
		return nil, ha.Errorf(ha.KindInvalid, "unknown action %q; use start, stop or restart", req.Action)
	}
	if (req.Node == "") == !req.All {
		return nil, ha.Errorf(ha.KindInvalid, "name one node, or ask for all standbys")
	}
	st := h.o.Source.Status()
	var targets []string
	for _, n := range st.Nodes {
		if n.Witness {
			if n.Name == req.Node {
				return nil, ha.Errorf(ha.KindConflict, "%s is a witness: it runs no service", n.Name)
			}
			continue
		}
		if req.All && n.Role != ha.RoleDown && !activeLike(n.Role) {
			targets = append(targets, n.Name)
		}
		if n.Name == req.Node {
			if activeLike(n.Role) {
				return nil, ha.Errorf(ha.KindConflict, "%s is active: its service is stopped only through a switchover; switch over first, then act on it as a standby", n.Name)
			}
			targets = []string{n.Name}
		}
	}
	if req.Node != "" && len(targets) == 0 {
		return nil, ha.Errorf(ha.KindNotFound, "no node %q in the configuration", req.Node)
	}
	if len(targets) == 0 {
		return nil, ha.Errorf(ha.KindConflict, "no standby is running")
	}
	ctx, cancel := detached(r)
	defer cancel()
	var out []serviceResult
	var firstErr error
	for _, node := range targets {
		res, err := h.serviceOn(ctx, node, req.Action, h.who(s.user))
		sr := serviceResult{Node: node, OK: err == nil, PID: res.PID}
		if err != nil {
			sr.Error = err.Error()
			if firstErr == nil {
				firstErr = err
			}
		}
		out = append(out, sr)
	}
	if !req.All && firstErr != nil {
		return nil, firstErr
	}
	return map[string]any{"action": req.Action, "results": out}, nil
}

func activeLike(r ha.Role) bool { return r == ha.RoleActive || r == ha.RolePromoting }

// serviceOn acts on node's service: in-process for this node, else through
// that node's agent API with the API token.
func (h *Handler) serviceOn(ctx context.Context, node, action, who string) (api.ServiceResult, error) {
	req := api.ServiceRequest{Action: action, Who: who}
	if node == h.o.Node {
		if err := h.needOperator(); err != nil {
			return api.ServiceResult{}, err
		}
		return h.o.Operator.ServiceControl(ctx, req)
	}
	addr, err := h.nodeAPI(node)
	if err != nil {
		return api.ServiceResult{}, err
	}
	res, err := h.o.Client.Service(ctx, addr, req)
	if err != nil {
		return api.ServiceResult{}, remoteError(node, err)
	}
	return res, nil
}

func (h *Handler) setAlias(r *http.Request, s *session, body json.RawMessage) (any, error) {
	var req struct {
		Node  string `json:"node"`
		Alias string `json:"alias"`
	}
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	if _, ok := h.o.Config.NodeByName(req.Node); !ok {
		return nil, ha.Errorf(ha.KindNotFound, "no node %q in the configuration", req.Node)
	}
	alias := strings.TrimSpace(req.Alias)
	if len([]rune(alias)) > 64 || strings.IndexFunc(alias, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return nil, ha.Errorf(ha.KindInvalid, "an alias is up to 64 printable characters")
	}
	shared := h.aliasesShared()
	if shared {
		ctx, cancel := detached(r)
		defer cancel()
		if err := h.o.Aliases.SetAlias(ctx, req.Node, alias); err != nil {
			return nil, err
		}
	} else if err := h.aliases.set(req.Node, alias); err != nil {
		return nil, err
	}
	return map[string]any{"node": req.Node, "alias": alias, "shared": shared}, nil
}
