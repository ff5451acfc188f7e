package api

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestFoldersHandlerRefusesStrangers: without a node certificate or the
// token nothing is answered; bad requests get a clear 4xx.
func TestFoldersHandlerRefusesStrangers(t *testing.T) {
	h := FoldersHandler(nil, []string{"n1"}, Options{Token: "0123456789abcdef"})
	for _, tc := range []struct {
		method, path, token, body string
		hdr                       map[string]string
		want                      int
		msg                       string
	}{
		{"GET", "/v1/folders/rec/manifest", "", "", nil, 401, "bearer token"},
		{"GET", "/v1/folders/rec/manifest", "wrong-token-0123", "", nil, 401, "wrong"},
		{"PUT", "/v1/folders/rec/chunk?path=a&size=1&mtime=1&epoch=1", "0123456789abcdef", "x", nil, 400, "left out only over TLS"},
		{"PUT", "/v1/folders/rec/file?path=a&size=1&mtime=1&epoch=1", "0123456789abcdef", "x", map[string]string{ChunkSumHeader: "123"}, 400, "8 hex digits"},
		{"PUT", "/v1/folders/rec/chunk?path=a&size=-1&epoch=1", "0123456789abcdef", "x", map[string]string{ChunkSumHeader: "00000000"}, 400, "size must be whole numbers"},
		{"POST", "/v1/folders/rec/begin", "0123456789abcdef", "{not json", nil, 400, "not valid JSON"},
		{"POST", "/v1/folders/rec/begin", "0123456789abcdef", `{"from":"n1","extra":1}`, nil, 400, "unknown field"},
		{"GET", "/v1/folders/rec/other", "0123456789abcdef", "", nil, 404, "no such folder endpoint"},
	} {
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		if tc.token != "" {
			r.Header.Set("Authorization", "Bearer "+tc.token)
		}
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want || !strings.Contains(w.Body.String(), tc.msg) {
			t.Errorf("%s %s: %d %s; want %d with %q", tc.method, tc.path, w.Code, w.Body.String(), tc.want, tc.msg)
		}
	}
}
