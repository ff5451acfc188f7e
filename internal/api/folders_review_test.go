package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// stubReceiver counts the writes that reach it.
type stubReceiver struct{ writes atomic.Int32 }

func (s *stubReceiver) FolderManifest(context.Context, string) (FolderManifest, error) {
	return FolderManifest{}, nil
}
func (s *stubReceiver) FolderBegin(context.Context, string, FolderWrite) (FolderOffset, error) {
	s.writes.Add(1)
	return FolderOffset{}, nil
}
func (s *stubReceiver) FolderChunk(_ context.Context, _ string, _ FolderWrite, off int64, _ string, data []byte) (FolderOffset, error) {
	s.writes.Add(1)
	return FolderOffset{Offset: off + int64(len(data))}, nil
}
func (s *stubReceiver) FolderCommit(context.Context, string, FolderWrite) (FileEntry, error) {
	s.writes.Add(1)
	return FileEntry{}, nil
}
func (s *stubReceiver) FolderPut(context.Context, string, FolderWrite, string, []byte) (FileEntry, error) {
	s.writes.Add(1)
	return FileEntry{}, nil
}
func (s *stubReceiver) FolderDelete(context.Context, string, FolderWrite) error {
	s.writes.Add(1)
	return nil
}
func (s *stubReceiver) FolderSource(context.Context, string, FolderSource) error {
	s.writes.Add(1)
	return nil
}

// slowReader gives its bytes in pieces, one every gap.
type slowReader struct {
	data []byte
	gap  time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.gap)
	n := copy(p[:min(len(p), 16<<10)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestFoldersChunkOutlastsReadTimeout: a chunk whose body takes longer than
// the server's ReadTimeout (the agent's is 10 s: an 8 MiB chunk over a link
// slower than ~7 Mbit/s, or four at once over ~27 Mbit/s) is still read.
// Before, every such chunk failed and was sent again, for ever.
func TestFoldersChunkOutlastsReadTimeout(t *testing.T) {
	recv := &stubReceiver{}
	srv := httptest.NewUnstartedServer(FoldersHandler(recv, []string{"n1"}, Options{Token: "0123456789abcdef"}))
	srv.Config.ReadTimeout = 500 * time.Millisecond
	srv.Start()
	defer srv.Close()
	data := bytes.Repeat([]byte{7}, 64<<10)
	req, err := http.NewRequest(http.MethodPut, srv.URL+"/v1/folders/rec/chunk?from=n1&epoch=1&path=a&size=65536&mtime=1&offset=0",
		&slowReader{data: data, gap: 300 * time.Millisecond}) // 4 pieces: 1.2 s
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Authorization", "Bearer 0123456789abcdef")
	req.Header.Set(ChunkSumHeader, "00000000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("slow chunk: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || recv.writes.Load() != 1 {
		t.Fatalf("slow chunk: HTTP %d %s, %d writes", resp.StatusCode, body, recv.writes.Load())
	}
}

// TestFoldersWriteInOwnNameOnly: a node certificate writes only in its own
// name; a standby's certificate cannot pass itself off as the active.
func TestFoldersWriteInOwnNameOnly(t *testing.T) {
	recv := &stubReceiver{}
	h := FoldersHandler(recv, []string{"n1", "n2"}, Options{})
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "n2"}}
	for _, tc := range []struct {
		from string
		want int
	}{{"n1", http.StatusForbidden}, {"n2", http.StatusOK}} {
		r := httptest.NewRequest(http.MethodPost, "/v1/folders/rec/delete", strings.NewReader(`{"from":"`+tc.from+`","epoch":3,"file":{"path":"a","size":0,"mtime_ns":0}}`))
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}, PeerCertificates: []*x509.Certificate{cert}}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("delete from %q with n2's certificate: %d %s; want %d", tc.from, w.Code, w.Body.String(), tc.want)
		}
	}
	if n := recv.writes.Load(); n != 1 {
		t.Errorf("%d writes reached the receiver; want 1 (n2's own)", n)
	}
}

// TestFoldersTokenRefusedOverTLS: with tls: configured (the request came
// over TLS) the API token does not open /v1/folders/: only a node
// certificate does (the token is held by operators and scripts too).
func TestFoldersTokenRefusedOverTLS(t *testing.T) {
	recv := &stubReceiver{}
	h := FoldersHandler(recv, []string{"n1"}, Options{Token: "0123456789abcdef"})
	for _, overTLS := range []bool{false, true} {
		r := httptest.NewRequest("POST", "/v1/folders/rec/begin", strings.NewReader(`{"from":"n1","epoch":1,"file":{"path":"a","size":1}}`))
		r.Header.Set("Authorization", "Bearer 0123456789abcdef")
		if overTLS {
			r.TLS = &tls.ConnectionState{HandshakeComplete: true}
		} else {
			r.TLS = nil
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch {
		case overTLS && (w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "client certificate")):
			t.Errorf("token over TLS: %d %s; want 401 asking for a node certificate", w.Code, w.Body.String())
		case !overTLS && w.Code != http.StatusOK:
			t.Errorf("token without TLS (insecure: true): %d %s; want 200", w.Code, w.Body.String())
		}
	}
	if n := recv.writes.Load(); n != 1 {
		t.Errorf("%d writes reached the folder; want 1 (the one without TLS)", n)
	}
}
