// Package sample is the small HTTP service that `haven demo` and the tests
// run under each agent. It answers with its node name and the epoch it serves
// at, and it serves as active only while its agent confirms, within a short
// validity window, that this node holds the active role: a frozen or dead
// agent makes it answer 503 instead of acting on a stale role.
package sample

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/ha"
)

// Server is the sample service.
type Server struct {
	Node   string
	Agent  string // base URL of the local agent's API
	Token  string // the agent API's bearer token, for the fenced data (kv.go)
	client *http.Client
	kv     *http.Client
}

// Reply is what GET / answers.
type Reply struct {
	Node  string   `json:"node"`
	Role  ha.Role  `json:"role"`
	Epoch ha.Epoch `json:"epoch"`
	// The agent confirmed the active role for this answer at some moment
	// from ServedAt to ServedTo (Unix ns: when it was asked, when it answered).
	ServedAt int64 `json:"served_at,omitempty"`
	ServedTo int64 `json:"served_to,omitempty"`
}

// New returns a sample service for node that asks agent for its role. The
// token for the fenced data routes comes from $HAVEN_API_TOKEN (TokenEnv).
// Under the cluster's TLS the agent gives its service the files to reach
// the API with in $HAVEN_TLS_CA, $HAVEN_TLS_CERT and $HAVEN_TLS_KEY.
func New(node, agent string) *Server {
	var tlsCfg *tls.Config
	if ca := os.Getenv("HAVEN_TLS_CA"); ca != "" {
		if t, err := certs.ClientTLS(certs.Files{CA: ca, Cert: os.Getenv("HAVEN_TLS_CERT"), Key: os.Getenv("HAVEN_TLS_KEY")}); err == nil {
			tlsCfg = t
		}
	}
	tr := api.NewTransport(tlsCfg)
	// Every request asks the agent: keep a connection per concurrent
	// request, or under load each ask beyond the few kept dials and shakes
	// hands anew and runs past the timeout (a 503 the proxy counts against
	// a node that serves).
	tr.MaxIdleConnsPerHost = roleConns
	return &Server{Node: node, Agent: agent, Token: os.Getenv(TokenEnv),
		client: &http.Client{Timeout: roleTimeout, Transport: tr},
		kv:     &http.Client{Timeout: 3 * time.Second, Transport: tr}}
}

const (
	// roleConns is how many connections to the agent the service keeps.
	roleConns = 64
	// roleTimeout bounds the ask of the agent before each answer: a frozen
	// agent makes the service answer 503 this late. (200 ms was too short
	// on a loaded machine; a slow ask only widens the window the answer
	// reports.)
	roleTimeout = 500 * time.Millisecond
)

func (s *Server) currentRole(ctx context.Context) (api.RoleView, error) {
	r, _, err := s.roleAt(ctx)
	return r, err
}

// roleAt returns the role and the window in which the agent confirmed it:
// from when it was asked to when it answered. It asks before every answer
// and caches nothing: a cached "serving" would outlive a voluntary resign
// (switchover, maintenance, unhealthy service) — the chaos suite caught an
// old active answering after the new one had started — and the agent
// answers from memory, so asking is cheap.
func (s *Server) roleAt(ctx context.Context) (api.RoleView, [2]time.Time, error) {
	asked := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Agent+"/v1/role", nil)
	if err != nil {
		return api.RoleView{}, [2]time.Time{asked, time.Now()}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return api.RoleView{}, [2]time.Time{asked, time.Now()}, fmt.Errorf("ask agent: %w", err)
	}
	defer resp.Body.Close()
	var r api.RoleView
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return api.RoleView{}, [2]time.Time{asked, time.Now()}, fmt.Errorf("agent answer: %w", err)
	}
	at := [2]time.Time{asked, time.Now()}
	return r, at, nil
}

// Handler returns the service's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		role, at, err := s.roleAt(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Haven-Node", s.Node)
		if err != nil || !role.Serving {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(Reply{Node: s.Node, Role: role.Role})
			return
		}
		_ = json.NewEncoder(w).Encode(Reply{Node: s.Node, Role: role.Role, Epoch: role.Epoch, ServedAt: at[0].UnixNano(), ServedTo: at[1].UnixNano()})
	})
	s.kvRoutes(mux)
	// /echo answers a POST with its body; /ws echoes WebSocket messages.
	// Both serve only on the active, like /.
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Haven-Node", s.Node)
		if role, err := s.currentRole(r.Context()); err != nil || !role.Serving {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "not active", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.Copy(w, r.Body)
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		if role, err := s.currentRole(r.Context()); err != nil || !role.Serving {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "not active", http.StatusServiceUnavailable)
			return
		}
		EchoWebSocket(w, r, s.Node)
	})
	return mux
}

// ListenAndServe serves on addr until ctx ends: HTTPS when certFile and
// keyFile name a PEM certificate and key, plain HTTP when both are empty.
func (s *Server) ListenAndServe(ctx context.Context, addr, certFile, keyFile string) error {
	if (certFile == "") != (keyFile == "") {
		return fmt.Errorf("sample service: give both a TLS certificate and a key, or neither")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sample service: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if certFile != "" {
		err = srv.ServeTLS(ln, certFile, keyFile)
	} else {
		err = srv.Serve(ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
