package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// ClientOptions configure a Client.
type ClientOptions struct {
	Token   string        // bearer token sent with every call
	Who     string        // the caller, for the audit log (WhoHeader); a request's own Who wins
	Timeout time.Duration // per call, unless the context ends sooner; default 30 s
	// TLS, when set, makes the client speak HTTPS to bare host:port
	// addresses and present TLS.Certificates (mutual TLS). Nil: plain HTTP.
	TLS *tls.Config
}

// Client calls the HTTP API of haven agents: one typed method per
// endpoint, errors mapped back to ha error kinds. Every part of haven that
// talks to an agent (the CLI, the dashboard, agent to agent, the drill, the
// tests) goes through it, so that the transport (TLS) is built in one place.
type Client struct {
	o    ClientOptions
	http *http.Client
}

// NewClient returns a client with its own connection pool.
func NewClient(o ClientOptions) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return &Client{o: o, http: &http.Client{Transport: NewTransport(o.TLS)}}
}

// NewTransport is the one place where the HTTP transport to agents is
// built: HTTPS with tlsCfg when it is set.
func NewTransport(tlsCfg *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // agents are reached directly, never through $HTTP_PROXY
	tr.MaxIdleConnsPerHost = 8
	if tlsCfg != nil {
		tr.TLSClientConfig = tlsCfg.Clone()
	}
	return tr
}

// WithWho returns a client that sends who as the caller (sharing the
// connection pool).
func (c *Client) WithWho(who string) *Client {
	c2 := *c
	c2.o.Who = who
	return &c2
}

// WithTimeout returns a client whose calls time out after d (sharing the
// connection pool).
func (c *Client) WithTimeout(d time.Duration) *Client {
	c2 := *c
	c2.o.Timeout = d
	return &c2
}

// Scheme is "https" when the client uses TLS, else "http".
func (c *Client) Scheme() string {
	if c.o.TLS != nil {
		return "https"
	}
	return "http"
}

// BaseURL turns an agent address (host:port) into its base URL; a full
// URL is returned as it is, without a trailing slash.
func (c *Client) BaseURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimRight(addr, "/")
	}
	return c.Scheme() + "://" + addr
}

// CallError is a failed call: the agent's error answer (Status > 0) or no
// answer at all (Status 0: the agent could not be reached). It carries the
// ha kind of the answer, so ha.KindOf and api.StatusOf work on it.
type CallError struct {
	URL    string // what was asked
	Status int    // the HTTP status of the answer; 0 when none came
	Msg    string // the agent's message, or what went wrong
	Kind   ha.Kind
	Err    error // the transport's error, when no answer came
}

func (e *CallError) Error() string {
	switch {
	case e.Status == 0:
		return fmt.Sprintf("ask the agent at %s: %v", e.URL, e.Err)
	case e.Msg == "":
		return fmt.Sprintf("HTTP %d from %s", e.Status, e.URL)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status)
}

// Unwrap exposes the kind (as an *ha.Error) and the transport's error.
func (e *CallError) Unwrap() []error {
	errs := []error{&ha.Error{Kind: e.Kind, Msg: e.Msg}}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Unreachable reports whether err is a call that got no answer, so that
// another agent may be asked instead.
func Unreachable(err error) bool {
	var ce *CallError
	return errors.As(err, &ce) && ce.Status == 0
}

// KindOfStatus maps an HTTP status back to an error kind: the inverse of
// StatusOf.
func KindOfStatus(code int) ha.Kind {
	switch code {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return ha.KindInvalid
	case http.StatusNotFound:
		return ha.KindNotFound
	case http.StatusConflict:
		return ha.KindConflict
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return ha.KindUnavailable
	case http.StatusUnauthorized:
		return ha.KindUnauthorized
	case http.StatusForbidden:
		return ha.KindForbidden
	}
	return ha.KindInternal
}

// maxAnswer bounds an answer read into memory (logs are the largest).
const maxAnswer = 64 << 20

// call does one request with body as JSON and returns the body of a 200 answer.
func (c *Client) call(ctx context.Context, method, addr, path string, who string, body any) ([]byte, error) {
	if body == nil {
		return c.send(ctx, method, addr, path, who, nil, nil)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, ha.Wrap(ha.KindInternal, err, "encode the request to %s", c.BaseURL(addr)+path)
	}
	return c.send(ctx, method, addr, path, who, b, http.Header{"Content-Type": {"application/json"}})
}

// send does one request with a raw body (nil: none) and extra headers, and
// returns the body of a 200 answer.
func (c *Client) send(ctx context.Context, method, addr, path string, who string, body []byte, hdr http.Header) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	u := c.BaseURL(addr) + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, ha.Wrap(ha.KindInvalid, err, "bad agent address %q", addr)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.o.Token)
	}
	if who == "" {
		who = c.o.Who
	}
	if who != "" {
		req.Header.Set(WhoHeader, who)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &CallError{URL: c.BaseURL(addr), Kind: ha.KindUnavailable, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, &CallError{URL: c.BaseURL(addr), Kind: ha.KindUnavailable, Err: fmt.Errorf("read the answer: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		ce := &CallError{URL: u, Status: resp.StatusCode, Kind: KindOfStatus(resp.StatusCode)}
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			ce.Msg = e.Error
		} else {
			ce.Msg = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
			if len(data) == 0 {
				ce.Msg = ""
			}
		}
		return data, ce
	}
	return data, nil
}

// callJSON does one request and decodes a 200 answer into out.
func (c *Client) callJSON(ctx context.Context, method, addr, path, who string, body, out any) error {
	data, err := c.call(ctx, method, addr, path, who, body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return ha.Wrap(ha.KindInternal, err, "unreadable answer from %s%s", c.BaseURL(addr), path)
	}
	return nil
}

// Status is GET /status.
func (c *Client) Status(ctx context.Context, addr string) (Status, error) {
	var st Status
	err := c.callJSON(ctx, http.MethodGet, addr, "/status", "", nil, &st)
	return st, err
}

// Role is GET /v1/role: the node's own role, as its service asks it.
func (c *Client) Role(ctx context.Context, addr string) (RoleView, error) {
	var r RoleView
	err := c.callJSON(ctx, http.MethodGet, addr, "/v1/role", "", nil, &r)
	return r, err
}

// LBCheck is GET /lb-check: whether the node serves, as a load balancer
// sees it (an answer other than 200 or 503 is an error).
func (c *Client) LBCheck(ctx context.Context, addr string) (bool, error) {
	_, err := c.call(ctx, http.MethodGet, addr, "/lb-check", "", nil)
	var ce *CallError
	if errors.As(err, &ce) && ce.Status == http.StatusServiceUnavailable {
		return false, nil
	}
	return err == nil, err
}

// Healthz is GET /healthz: whether the agent answers at all.
func (c *Client) Healthz(ctx context.Context, addr string) error {
	_, err := c.call(ctx, http.MethodGet, addr, "/healthz", "", nil)
	return err
}

// Metrics is GET /metrics, in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context, addr string) (string, error) {
	b, err := c.call(ctx, http.MethodGet, addr, "/metrics", "", nil)
	return string(b), err
}

// Switchover is POST /v1/switchover.
func (c *Client) Switchover(ctx context.Context, addr string, req SwitchoverRequest) (SwitchoverResult, error) {
	var res SwitchoverResult
	err := c.callJSON(ctx, http.MethodPost, addr, "/v1/switchover", req.Who, req, &res)
	return res, err
}

// Promote is POST /v1/promote.
func (c *Client) Promote(ctx context.Context, addr string, req PromoteRequest) (SwitchoverResult, error) {
	var res SwitchoverResult
	err := c.callJSON(ctx, http.MethodPost, addr, "/v1/promote", req.Who, req, &res)
	return res, err
}

// Maintenance is POST /v1/maintenance.
func (c *Client) Maintenance(ctx context.Context, addr string, req MaintenanceRequest) (MaintenanceResult, error) {
	var res MaintenanceResult
	err := c.callJSON(ctx, http.MethodPost, addr, "/v1/maintenance", req.Who, req, &res)
	return res, err
}

// Service is POST /v1/service: it acts on the service of the node at addr.
func (c *Client) Service(ctx context.Context, addr string, req ServiceRequest) (ServiceResult, error) {
	var res ServiceResult
	err := c.callJSON(ctx, http.MethodPost, addr, "/v1/service", req.Who, req, &res)
	return res, err
}

// Members is GET /v1/members.
func (c *Client) Members(ctx context.Context, addr string) ([]ha.Member, error) {
	var list []ha.Member
	err := c.callJSON(ctx, http.MethodGet, addr, "/v1/members", "", nil, &list)
	return list, err
}

// ChangeMembers is POST /v1/members (add or remove).
func (c *Client) ChangeMembers(ctx context.Context, addr string, req MembersRequest) ([]ha.Member, error) {
	var list []ha.Member
	err := c.callJSON(ctx, http.MethodPost, addr, "/v1/members", req.Who, req, &list)
	return list, err
}

// Events is GET /v1/events?limit=N, newest last.
func (c *Client) Events(ctx context.Context, addr string, limit int) ([]ha.Event, error) {
	var evs []ha.Event
	err := c.callJSON(ctx, http.MethodGet, addr, "/v1/events?limit="+strconv.Itoa(limit), "", nil, &evs)
	return evs, err
}

// Logs is GET /v1/logs: the newest lines of the node's agent log (all of
// it with lines <= 0).
func (c *Client) Logs(ctx context.Context, addr string, lines int) ([]byte, error) {
	path := "/v1/logs"
	if lines > 0 {
		path += "?lines=" + strconv.Itoa(lines)
	}
	b, err := c.call(ctx, http.MethodGet, addr, path, "", nil)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Failsafe is POST /v1/failsafe, an active's question to a peer.
func (c *Client) Failsafe(ctx context.Context, addr string, req FailsafeRequest) (FailsafeResult, error) {
	var res FailsafeResult
	err := c.callJSON(ctx, http.MethodPost, addr, "/v1/failsafe", "", req, &res)
	return res, err
}

// KVPut is POST /v1/kv/{key}: a fenced write.
func (c *Client) KVPut(ctx context.Context, addr, key string, req KVPutRequest) (KVResult, error) {
	var res KVResult
	err := c.callJSON(ctx, http.MethodPost, addr, "/v1/kv/"+url.PathEscape(key), "", req, &res)
	return res, err
}

// KVGet is GET /v1/kv/{key}?epoch=N: a fenced read.
func (c *Client) KVGet(ctx context.Context, addr, key string, epoch ha.Epoch) (KVResult, error) {
	var res KVResult
	err := c.callJSON(ctx, http.MethodGet, addr, "/v1/kv/"+url.PathEscape(key)+"?epoch="+strconv.FormatInt(int64(epoch), 10), "", nil, &res)
	return res, err
}
