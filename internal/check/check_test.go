package check

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// wait is how long a test waits for a condition before failing. Generous:
// the tests run with -race on small, loaded machines.
const wait = 10 * time.Second

func mustNew(t *testing.T, c Options, vars map[string]string) Checker {
	t.Helper()
	ch, err := New(c, vars)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return ch
}

// deadPort returns a loopback address where nothing listens.
func deadPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprintln(w, "fine")
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/teapot":
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dead := deadPort(t)

	tests := []struct {
		name    string
		url     string
		want    int
		wantErr string // "" means pass
	}{
		{"ok", "http://${ADDR}/ok", 0, ""},
		{"503", srv.URL + "/down", 200, "http " + srv.URL + "/down: status 503, want 200"},
		{"expected status", srv.URL + "/teapot", 418, ""},
		{"redirect not followed", srv.URL + "/moved", 200, "status 302, want 200"},
		{"redirect expected", srv.URL + "/moved", 302, ""},
		{"refused", "http://" + dead + "/healthz", 200, "http http://" + dead + "/healthz: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, Options{Name: "web", Timeout: 5 * time.Second,
				HTTP: &HTTP{URL: tt.url, ExpectStatus: tt.want}}, map[string]string{"ADDR": host})
			err := c.Check(context.Background())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Check: %v, want pass", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Check passed, want error %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Check: %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestHTTPS: an https check verifies the service with the CA in ca_file
// (and server_name when the URL's host is not in the certificate); a
// service the CA did not sign fails it.
func TestHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "fine") }))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ok := mustNew(t, Options{HTTP: &HTTP{URL: srv.URL + "/", ExpectStatus: 200, CAFile: ca}, Timeout: wait}, nil)
	if err := ok.Check(ctx); err != nil {
		t.Errorf("https check with the service's CA: %v", err)
	}
	named := mustNew(t, Options{HTTP: &HTTP{URL: srv.URL + "/", ExpectStatus: 200, CAFile: ca, ServerName: "example.com"}, Timeout: wait}, nil)
	if err := named.Check(ctx); err != nil {
		t.Errorf("https check with server_name example.com (in httptest's certificate): %v", err)
	}
	wrongName := mustNew(t, Options{HTTP: &HTTP{URL: srv.URL + "/", ExpectStatus: 200, CAFile: ca, ServerName: "other.test"}, Timeout: wait}, nil)
	if err := wrongName.Check(ctx); err == nil {
		t.Error("https check passed with a server_name the certificate does not hold")
	}
	untrusted := mustNew(t, Options{HTTP: &HTTP{URL: srv.URL + "/", ExpectStatus: 200}, Timeout: wait}, nil)
	if err := untrusted.Check(ctx); err == nil {
		t.Error("https check passed against a certificate no trusted CA signed")
	}
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := mustNew(t, Options{Timeout: 50 * time.Millisecond, HTTP: &HTTP{URL: srv.URL}}, nil)
	err := c.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Fatalf("Check: %v, want a timeout", err)
	}
}

// A probe reuses its connection, but a fresh one serves at least every
// httpFreshEvery probes; a server that went away is noticed on the next
// probe, not hidden by the kept connection.
func TestHTTPKeepAliveBounded(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]int{} // remote address: requests on it
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr]++
		mu.Unlock()
	}))
	c := mustNew(t, Options{Timeout: 5 * time.Second, HTTP: &HTTP{URL: srv.URL}}, nil)
	const probes = 3 * httpFreshEvery
	for range probes {
		if err := c.Check(context.Background()); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	mu.Lock()
	for addr, n := range conns {
		if n > httpFreshEvery {
			t.Errorf("connection %s served %d probes, want at most %d", addr, n, httpFreshEvery)
		}
	}
	if len(conns) > probes/2 {
		t.Errorf("%d connections for %d probes: not reused", len(conns), probes)
	}
	mu.Unlock()
	srv.Close()
	if err := c.Check(context.Background()); err == nil {
		t.Fatal("Check passed after the server closed")
	}
}

// After a failed probe the next one opens a fresh connection, and a server
// that stops accepting new connections while it still answers on the kept
// one is seen within httpFreshEvery probes.
func TestHTTPKeptConnectionRenewed(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	var mu sync.Mutex
	var addrs []string // remote address of each request, in order
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		addrs = append(addrs, r.RemoteAddr)
		mu.Unlock()
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	c := mustNew(t, Options{Timeout: 5 * time.Second, HTTP: &HTTP{URL: srv.URL}}, nil)
	ctx := context.Background()
	if err := c.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	status.Store(http.StatusServiceUnavailable)
	if err := c.Check(ctx); err == nil {
		t.Fatal("Check passed on a 503")
	}
	status.Store(http.StatusOK)
	if err := c.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	mu.Lock()
	if len(addrs) != 3 || addrs[0] != addrs[1] || addrs[2] == addrs[1] {
		t.Errorf("connections of the three probes %v: want the first kept, then a fresh one after the failure", addrs)
	}
	mu.Unlock()

	// Stop accepting; the kept connection still answers.
	srv.Listener.Close()
	for i := range httpFreshEvery {
		if err := c.Check(ctx); err != nil {
			t.Logf("probe %d after the listener closed: %v", i+1, err)
			return
		}
	}
	t.Fatalf("%d probes passed after the server stopped accepting connections", httpFreshEvery)
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ok := mustNew(t, Options{Timeout: 5 * time.Second, TCP: &TCP{Address: "127.0.0.1:${PORT}"}}, map[string]string{"PORT": port})
	if err := ok.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got, want := ok.Name(), "tcp "+ln.Addr().String(); got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}

	dead := deadPort(t)
	bad := mustNew(t, Options{Timeout: 5 * time.Second, TCP: &TCP{Address: dead}}, nil)
	err = bad.Check(context.Background())
	if want := "tcp " + dead + ": connection refused"; err == nil || err.Error() != want {
		t.Fatalf("Check: %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not wrap ECONNREFUSED", err)
	}
}

func TestExec(t *testing.T) {
	vars := map[string]string{"WANT": "blue"}
	tests := []struct {
		name    string
		argv    []string
		wantErr string
	}{
		{"true", []string{"/bin/true"}, ""},
		{"false", []string{"/bin/false"}, "exec /bin/false: exit status 1"},
		{"env", []string{"sh", "-c", `test "$WANT" = blue`}, ""},
		{"expanded", []string{"test", "${WANT}", "=", "blue"}, ""},
		{"output", []string{"sh", "-c", "echo broken pipe to db >&2; exit 3"}, "exit status 3: broken pipe to db"},
		{"missing", []string{"/no/such/check"}, "exec /no/such/check: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, Options{Timeout: 5 * time.Second, Exec: &Exec{Command: tt.argv}}, vars)
			err := c.Check(context.Background())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Check: %v, want pass", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Check passed, want error %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Check: %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestExecOutputIsCut(t *testing.T) {
	c := mustNew(t, Options{Timeout: 5 * time.Second, Exec: &Exec{
		Command: []string{"sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x; exit 1"}}}, nil)
	err := c.Check(context.Background())
	if err == nil {
		t.Fatal("Check passed")
	}
	_, out, _ := strings.Cut(err.Error(), "exit status 1: ")
	if n := strings.Count(out, "x"); n != execOutputMax || len(out) != n {
		t.Fatalf("error holds %d bytes of output, want %d", n, execOutputMax)
	}
}

// On timeout the whole process group dies, not only the shell.
func TestExecTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := mustNew(t, Options{Timeout: 300 * time.Millisecond, Exec: &Exec{
		Command: []string{"sh", "-c", `sleep 5 & echo $! > "$PIDFILE"; wait`}}}, map[string]string{"PIDFILE": pidFile})
	start := time.Now()
	err := c.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("Check: %v, want a timeout", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("Check took %s, want it cut at the timeout", took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

// waitGone waits until pid no longer runs. A zombie counts as gone: once
// orphaned, it is reaped by init, which may be slow or absent in a container.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		c    Options
	}{
		{"no kind", Options{Name: "x"}},
		{"two kinds", Options{TCP: &TCP{Address: "a:1"}, Exec: &Exec{Command: []string{"true"}}}},
		{"bad scheme", Options{HTTP: &HTTP{URL: "ftp://x/"}}},
		{"no port", Options{TCP: &TCP{Address: "localhost"}}},
		{"empty command", Options{Exec: &Exec{}}},
		{"missing ca_file", Options{HTTP: &HTTP{URL: "https://x/", CAFile: "/nonexistent/ca.pem"}}},
		{"ca_file without PEM", Options{HTTP: &HTTP{URL: "https://x/", CAFile: "/dev/null"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.c, nil); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}
