package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// fakeOp answers operator calls with err (when set) and records who asked.
type fakeOp struct {
	mu   sync.Mutex
	err  error
	whos []string
}

func (f *fakeOp) result(who string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.whos = append(f.whos, who)
	return f.err
}

func (f *fakeOp) Switchover(_ context.Context, req SwitchoverRequest) (SwitchoverResult, error) {
	return SwitchoverResult{From: "a", To: req.To, Epoch: 8}, f.result(req.Who)
}
func (f *fakeOp) Promote(_ context.Context, req PromoteRequest) (SwitchoverResult, error) {
	return SwitchoverResult{To: req.Node, Epoch: 9}, f.result(req.Who)
}
func (f *fakeOp) Maintenance(_ context.Context, req MaintenanceRequest) (MaintenanceResult, error) {
	return MaintenanceResult{Node: req.Node, On: req.On}, f.result(req.Who)
}
func (f *fakeOp) ServiceControl(_ context.Context, req ServiceRequest) (ServiceResult, error) {
	return ServiceResult{Node: "a", Action: req.Action, PID: 42}, f.result(req.Who)
}
func (f *fakeOp) Events(context.Context, int) ([]ha.Event, error) {
	return []ha.Event{{Node: "a", Kind: "role"}}, f.result("")
}
func (f *fakeOp) Failsafe(_ context.Context, req FailsafeRequest) (FailsafeResult, error) {
	return FailsafeResult{Node: "b", NotActive: true}, f.result("")
}
func (f *fakeOp) Members(context.Context) ([]ha.Member, error) {
	return []ha.Member{{Name: "a"}}, f.result("")
}
func (f *fakeOp) ChangeMembers(_ context.Context, req MembersRequest) ([]ha.Member, error) {
	return []ha.Member{{Name: req.Node}}, f.result(req.Who)
}

const testToken = "client-test-token"

func serve(t *testing.T, op *fakeOp) string {
	t.Helper()
	srv := httptest.NewServer(Handler(&fakeSource{serving: true}, op, Options{Token: testToken}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestClientCalls: every typed call reaches its endpoint with the token
// and the caller's name, and decodes the answer.
func TestClientCalls(t *testing.T) {
	op := &fakeOp{}
	addr := serve(t, op)
	c := NewClient(ClientOptions{Token: testToken, Who: "alice@host", Timeout: 5 * time.Second})
	ctx := context.Background()
	if st, err := c.Status(ctx, addr); err != nil || st.Leader.Epoch != 7 {
		t.Fatalf("Status: %+v %v", st, err)
	}
	if r, err := c.Role(ctx, addr); err != nil || !r.Serving {
		t.Fatalf("Role: %+v %v", r, err)
	}
	if ok, err := c.LBCheck(ctx, addr); err != nil || !ok {
		t.Fatalf("LBCheck: %v %v", ok, err)
	}
	if err := c.Healthz(ctx, addr); err != nil {
		t.Fatalf("Healthz: %v", err)
	}
	if m, err := c.Metrics(ctx, addr); err != nil || m != "m 1\n" {
		t.Fatalf("Metrics: %q %v", m, err)
	}
	if res, err := c.Switchover(ctx, addr, SwitchoverRequest{To: "b"}); err != nil || res.To != "b" || res.Epoch != 8 {
		t.Fatalf("Switchover: %+v %v", res, err)
	}
	if res, err := c.Promote(ctx, addr, PromoteRequest{Node: "c", Who: "bob (dashboard)"}); err != nil || res.To != "c" {
		t.Fatalf("Promote: %+v %v", res, err)
	}
	if res, err := c.Maintenance(ctx, addr, MaintenanceRequest{Node: "b", On: true}); err != nil || !res.On {
		t.Fatalf("Maintenance: %+v %v", res, err)
	}
	if res, err := c.Service(ctx, addr, ServiceRequest{Action: "restart"}); err != nil || res.PID != 42 {
		t.Fatalf("Service: %+v %v", res, err)
	}
	if l, err := c.Members(ctx, addr); err != nil || len(l) != 1 {
		t.Fatalf("Members: %+v %v", l, err)
	}
	if l, err := c.ChangeMembers(ctx, addr, MembersRequest{Action: "add", Node: "d"}); err != nil || l[0].Name != "d" {
		t.Fatalf("ChangeMembers: %+v %v", l, err)
	}
	if evs, err := c.Events(ctx, addr, 10); err != nil || len(evs) != 1 {
		t.Fatalf("Events: %+v %v", evs, err)
	}
	if res, err := c.Failsafe(ctx, addr, FailsafeRequest{From: "a", Epoch: 7, GrantMS: 1000}); err != nil || !res.NotActive {
		t.Fatalf("Failsafe: %+v %v", res, err)
	}
	want := []string{"alice@host", "bob (dashboard)", "alice@host", "alice@host", "alice@host"}
	got := []string{op.whos[0], op.whos[1], op.whos[2], op.whos[3], op.whos[5]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("who sent: %q, want %q", got, want)
	}
	// A full URL works as an address too.
	if _, err := c.Status(ctx, "http://"+addr+"/"); err != nil {
		t.Errorf("Status by URL: %v", err)
	}
}

// TestClientErrorKinds: an agent's error answer comes back as the kind the
// agent gave it, with its message; no answer is Unavailable and
// Unreachable; a wrong token is Unauthorized.
func TestClientErrorKinds(t *testing.T) {
	op := &fakeOp{}
	addr := serve(t, op)
	c := NewClient(ClientOptions{Token: testToken, Timeout: 5 * time.Second})
	ctx := context.Background()
	for _, k := range []ha.Kind{ha.KindInvalid, ha.KindNotFound, ha.KindConflict, ha.KindUnavailable, ha.KindForbidden, ha.KindInternal} {
		op.err = ha.Errorf(k, "refused for a reason %d", k)
		_, err := c.Switchover(ctx, addr, SwitchoverRequest{})
		if ha.KindOf(err) != k || StatusOf(err) != StatusOf(op.err) {
			t.Errorf("kind %d came back as %d (%v)", k, ha.KindOf(err), err)
		}
		if err == nil || !strings.Contains(err.Error(), "refused for a reason") || Unreachable(err) {
			t.Errorf("kind %d: error %v should carry the agent's message and not be unreachable", k, err)
		}
	}
	op.err = nil
	_, err := NewClient(ClientOptions{Token: "wrong"}).Switchover(ctx, addr, SwitchoverRequest{})
	if ha.KindOf(err) != ha.KindUnauthorized || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("wrong token: %v (kind %d)", err, ha.KindOf(err))
	}
	if _, err := NewClient(ClientOptions{}).Events(ctx, addr, 10); ha.KindOf(err) != ha.KindUnauthorized {
		t.Errorf("no token: %v", err)
	}
	if _, err := c.Events(ctx, addr, 0); ha.KindOf(err) != ha.KindInvalid {
		t.Errorf("bad limit: %v", err)
	}
	// Nobody listens on a port we just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	_, err = c.Status(ctx, dead)
	if !Unreachable(err) || ha.KindOf(err) != ha.KindUnavailable || !strings.Contains(err.Error(), "ask the agent at http://"+dead) {
		t.Errorf("dead agent: %v", err)
	}
	// lb-check's 503 is an answer, not an error.
	srv := httptest.NewServer(Handler(&fakeSource{}, nil, Options{}))
	defer srv.Close()
	if ok, err := c.LBCheck(ctx, srv.URL); ok || err != nil {
		t.Errorf("LBCheck of a standby: %v %v", ok, err)
	}
}

// TestClientTimeout: a call gives up after the client's timeout, as an
// unreachable agent.
func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := NewClient(ClientOptions{Timeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := c.Status(context.Background(), srv.URL)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the call took %v, want about 100ms", took)
	}
	if !Unreachable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	// WithTimeout changes it for one copy only.
	if _, err := c.WithTimeout(20*time.Millisecond).Role(context.Background(), srv.URL); !Unreachable(err) {
		t.Fatalf("WithTimeout: %v", err)
	}
}
