package sample

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

// TokenEnv names the variable the sample service reads the agent API's
// token from.
const TokenEnv = "HAVEN_API_TOKEN"

// KVReply is what POST /write and GET /read answer.
type KVReply struct {
	Node     string   `json:"node"`
	Epoch    ha.Epoch `json:"epoch"`
	Key      string   `json:"key"`
	Value    string   `json:"value"`
	Found    bool     `json:"found"`
	Rev      int64    `json:"rev"`
	ServedAt int64    `json:"served_at"` // the agent confirmed the active role from ServedAt
	ServedTo int64    `json:"served_to"` // to ServedTo (Unix ns)
	Error    string   `json:"error,omitempty"`
}

// The shared state: the sample keeps it in the cluster's store through its
// agent's fenced data routes, so a write carrying a stale epoch is refused
// by the store itself, and a write is acknowledged (200) only once it has
// committed there.
//
//	POST /write?k=KEY&v=VALUE[&id=ID]  200 committed; 503 nothing written
//	                                   (not active, or the epoch is stale);
//	                                   504 the outcome is unknown
//	GET  /read?k=KEY                   200 with the value; 503 not active
//
// id makes a retried write apply once (the proxy retries a 503, and any
// request with an Idempotency-Key header, whose value is used when id is
// not given).
func (s *Server) kvRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		id := q.Get("id")
		if id == "" {
			id = r.Header.Get("Idempotency-Key")
		}
		s.kvCall(w, r, http.MethodPost, q.Get("k"), api.KVPutRequest{Value: q.Get("v"), ID: id})
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		s.kvCall(w, r, http.MethodGet, r.URL.Query().Get("k"), api.KVPutRequest{})
	})
}

func (s *Server) kvCall(w http.ResponseWriter, r *http.Request, method, key string, put api.KVPutRequest) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Haven-Node", s.Node)
	reply := func(code int, rep KVReply) {
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	}
	if key == "" {
		reply(http.StatusBadRequest, KVReply{Node: s.Node, Error: "k=KEY is required"})
		return
	}
	role, at, err := s.roleAt(r.Context())
	if err != nil || !role.Serving {
		reply(http.StatusServiceUnavailable, KVReply{Node: s.Node, Key: key, Error: "not active"})
		return
	}
	rep := KVReply{Node: s.Node, Epoch: role.Epoch, Key: key, ServedAt: at[0].UnixNano(), ServedTo: at[1].UnixNano()}
	res, code, err := s.agentKV(r.Context(), method, key, role.Epoch, put)
	switch {
	case err == nil && code == http.StatusOK:
		rep.Value, rep.Found, rep.Rev = res.Value, res.Found, res.Rev
		reply(http.StatusOK, rep)
		return
	case code == http.StatusConflict:
		// The store refused the epoch: this node is no longer active.
		// Nothing was written.
		rep.Error = "not active (epoch refused by the store)"
		reply(http.StatusServiceUnavailable, rep)
		return
	}
	if err != nil {
		rep.Error = err.Error()
	}
	if method == http.MethodPost {
		reply(http.StatusGatewayTimeout, rep) // may or may not have committed
		return
	}
	reply(http.StatusServiceUnavailable, rep)
}

// agentKV calls the local agent's /v1/kv route.
func (s *Server) agentKV(ctx context.Context, method, key string, epoch ha.Epoch, put api.KVPutRequest) (api.KVResult, int, error) {
	u := s.Agent + "/v1/kv/" + url.PathEscape(key)
	var body *bytes.Reader
	if method == http.MethodPost {
		put.Epoch = epoch
		b, _ := json.Marshal(put)
		body = bytes.NewReader(b)
	} else {
		u += "?epoch=" + strconv.FormatInt(int64(epoch), 10)
		body = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return api.KVResult{}, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.kv.Do(req)
	if err != nil {
		return api.KVResult{}, 0, fmt.Errorf("ask agent: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return api.KVResult{}, resp.StatusCode, fmt.Errorf("agent answered %d: %s", resp.StatusCode, e.Error)
	}
	var res api.KVResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return api.KVResult{}, resp.StatusCode, fmt.Errorf("agent answer: %w", err)
	}
	return res, http.StatusOK, nil
}
