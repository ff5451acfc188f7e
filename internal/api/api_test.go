package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/haven-ha/haven/internal/ha"
)

type fakeSource struct{ serving bool }

func (f *fakeSource) Serving() bool { return f.serving }
func (f *fakeSource) Status() Status {
	return Status{Cluster: "c", Leader: ha.Leader{Node: "a", Epoch: 7}, Nodes: []NodeView{{Name: "a", Role: ha.RoleActive, Epoch: 7}}}
}
func (f *fakeSource) Role() RoleView {
	return RoleView{Node: "a", Role: ha.RoleActive, Epoch: 7, Serving: f.serving}
}
func (f *fakeSource) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("m 1\n")) })
}

func do(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestLBCheck(t *testing.T) {
	src := &fakeSource{}
	h := Handler(src, nil, Options{})
	for _, tc := range []struct {
		serving bool
		method  string
		code    int
	}{
		{true, http.MethodGet, 200}, {false, http.MethodGet, 503},
		{true, http.MethodHead, 200}, {false, http.MethodHead, 503},
	} {
		src.serving = tc.serving
		rec := do(t, h, tc.method, "/lb-check")
		if rec.Code != tc.code {
			t.Errorf("%s /lb-check serving=%v: %d, want %d", tc.method, tc.serving, rec.Code, tc.code)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("/lb-check must not be cached")
		}
		if body := rec.Body.String(); strings.Contains(body, "epoch") || strings.Contains(body, "a") && tc.method == http.MethodGet && len(body) > 20 {
			t.Errorf("/lb-check reveals more than it should: %q", body)
		}
	}
}

func TestStatusAndRole(t *testing.T) {
	h := Handler(&fakeSource{serving: true}, nil, Options{})
	rec := do(t, h, http.MethodGet, "/status")
	var st Status
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &st) != nil || st.Leader.Epoch != 7 || len(st.Nodes) != 1 {
		t.Fatalf("/status: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, http.MethodGet, "/v1/role")
	var r RoleView
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &r) != nil || !r.Serving || r.Epoch != 7 {
		t.Fatalf("/v1/role: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, http.MethodGet, "/metrics"); rec.Code != 200 || rec.Body.String() != "m 1\n" {
		t.Fatalf("/metrics: %d %q", rec.Code, rec.Body)
	}
	if rec := do(t, h, http.MethodGet, "/healthz"); rec.Code != 200 {
		t.Fatalf("/healthz: %d", rec.Code)
	}
}

func TestBadRequestsGetJSONErrors(t *testing.T) {
	h := Handler(&fakeSource{}, nil, Options{})
	for _, tc := range []struct {
		method, path string
		code         int
		want         string
	}{
		{http.MethodGet, "/nope", 404, "no such endpoint"},
		{http.MethodPost, "/lb-check", 405, "use GET"},
		{http.MethodDelete, "/status", 405, "not allowed"},
	} {
		rec := do(t, h, tc.method, tc.path)
		var e Error
		if rec.Code != tc.code || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s %s: %d %s; want %d with %q", tc.method, tc.path, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
}
