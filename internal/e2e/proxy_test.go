package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/sample"
	"github.com/haven-ha/haven/internal/store/storetest"
	"github.com/haven-ha/haven/internal/syncbuf"
)

// proxyProc is a real `haven proxy` process in front of a test cluster.
type proxyProc struct {
	Addr, Metrics string
	proc          *harness.Proc
	log           *syncbuf.Buffer
}

// startProxy runs `haven proxy` with the cluster's config plus a proxy:
// section (section is its YAML body, indented by two spaces). edit, if
// given, rewrites the cluster's config for the proxy alone first.
func (c *Cluster) startProxy(t testing.TB, name, section string, edit ...func(string) string) *proxyProc {
	t.Helper()
	ports := freePorts(t, 2)
	p := &proxyProc{Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), Metrics: fmt.Sprintf("127.0.0.1:%d", ports[1]), log: &syncbuf.Buffer{}}
	raw, err := os.ReadFile(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	base := string(raw)
	for _, e := range edit {
		base = e(base)
	}
	cfg := filepath.Join(c.Dir, name+".yaml")
	text := fmt.Sprintf("%s\nproxy:\n  listen: %s\n  metrics_listen: %s\n%s", base, p.Addr, p.Metrics, section)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if p.proc, err = harness.Start("", p.log, havenBin, "proxy", "--config", cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if late := harness.Stop(10*time.Second, p.proc); len(late) > 0 {
			t.Errorf("proxy %s did not stop within 10s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("---- log of proxy %s ----\n%s", name, tail(p.log.String(), 8000))
		}
	})
	return p
}

// proxyClient keeps connections alive, like a browser or an API client.
var proxyClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}

// getNode GETs / through the proxy and returns the code and the node that answered.
func getNode(addr string) (int, string, error) {
	resp, r, err := getReply(proxyClient, "http://"+addr+"/")
	if resp == nil {
		return 0, "", err
	}
	return resp.StatusCode, r.Node, err
}

// getReply GETs url with c and decodes the sample service's reply. The
// response (status, headers, protocol, TLS state) comes back with its body
// read and closed. A 200 whose body is not a reply is an error; any other
// status leaves the reply empty.
func getReply(c *http.Client, url string) (*http.Response, sample.Reply, error) {
	var r sample.Reply
	resp, err := c.Get(url)
	if err != nil {
		return nil, r, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil && resp.StatusCode == 200 {
		return resp, r, err
	}
	return resp, r, nil
}

// load runs GETs from 8 goroutines and counts what clients see.
type load struct {
	mu     sync.Mutex
	ok     int
	errs   []string
	byNode map[string]int
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startLoad(addr string, workers int) *load {
	l := &load{byNode: map[string]int{}, stop: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, node, err := getNode(addr)
				l.mu.Lock()
				switch {
				case err != nil:
					l.errs = append(l.errs, err.Error())
				case code != http.StatusOK:
					l.errs = append(l.errs, fmt.Sprintf("status %d from %s", code, node))
				default:
					l.ok++
					l.byNode[node]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) count(node string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byNode[node]
}

func (l *load) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// TestProxy runs one cluster with two real proxies in front of it (HTTP and
// TCP) and checks what clients see: zero errors for GETs across a service
// crash and a graceful agent stop, bounded answers for POSTs, WebSocket
// close-and-reconnect, h2c, TCP mode, forged cookies and bad input.
func TestProxy(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	hp := c.startProxy(t, "proxy-http", "  sticky: {mode: cookie, key: e2e-sticky-secret-0123456789}\n  limits: {max_header_bytes: 8KiB}\n")
	tp := c.startProxy(t, "proxy-tcp", "  mode: tcp\n")
	ca, certFile, keyFile, serial1 := proxyCert(t, c.Dir)
	sp := c.startProxy(t, "proxy-tls", fmt.Sprintf("  tls: {cert: %s, key: %s}\n", certFile, keyFile))
	first, _ := c.WaitActive(startTimeout)
	e2etest.WaitFor(t, 20*time.Second, "the proxy to reach "+first, func() bool {
		code, node, err := getNode(hp.Addr)
		return err == nil && code == 200 && node == first
	})

	// Long-lived clients opened before the faults.
	ws, err := sample.DialWebSocket(hp.Addr, "/ws", 5*time.Second)
	if err != nil {
		t.Fatalf("websocket through the proxy: %v", err)
	}
	defer ws.Close()
	if err := ws.Send("hello"); err != nil {
		t.Fatal(err)
	}
	if _, msg, _, err := ws.Receive(5 * time.Second); err != nil || msg != "hello" || ws.Node != first {
		t.Fatalf("websocket echo: %q from %s, %v (want hello from %s)", msg, ws.Node, err, first)
	}
	tcp, tbr := tcpGet(t, tp.Addr, nil, first)
	defer tcp.Close()

	l := startLoad(hp.Addr, 8)
	posts := startPosts(t, hp.Addr)
	e2etest.WaitFor(t, 10*time.Second, "traffic through the proxy", func() bool { return l.count(first) > 100 })

	// 1. The active's service crashes.
	c.KillService(first)
	second, _ := c.WaitActive(15*time.Second, first)
	e2etest.WaitFor(t, 15*time.Second, "traffic on "+second, func() bool { return l.count(second) > 100 })
	t.Logf("service crash on %s: %s took over", first, second)

	// The WebSocket was closed cleanly and reconnects to the new active.
	op, _, code, err := ws.Receive(10 * time.Second)
	if err != nil || op != sample.OpClose || code != 1012 {
		t.Errorf("websocket after failover: op %d code %d err %v; want a close frame with 1012", op, code, err)
	}
	ws2, err := sample.DialWebSocket(hp.Addr, "/ws", 5*time.Second)
	if err != nil {
		t.Fatalf("websocket reconnect: %v", err)
	}
	if err := ws2.Send("again"); err != nil {
		t.Fatal(err)
	}
	if _, msg, _, err := ws2.Receive(5 * time.Second); err != nil || msg != "again" || ws2.Node != second {
		t.Errorf("websocket reconnect: %q from %s, %v (want again from %s)", msg, ws2.Node, err, second)
	}
	ws2.Close()
	// The TCP connection to the old active was closed; a new one reaches the new active.
	_ = tcp.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := tbr.ReadByte(); err == nil {
		t.Errorf("TCP connection to the old active %s still open after failover", first)
	}
	tcp2, _ := tcpGet(t, tp.Addr, nil, second)
	tcp2.Close()

	// 2. A planned stop: SIGTERM to the new active's agent (it resigns).
	c.Signal(second, syscall.SIGTERM)
	third, _ := c.WaitActive(20*time.Second, second)
	e2etest.WaitFor(t, 15*time.Second, "traffic on "+third, func() bool { return l.count(third) > 100 })
	t.Logf("agent SIGTERM on %s: %s took over", second, third)

	close(l.stop)
	l.wg.Wait()
	posts.finish(t)
	if errs := l.errors(); len(errs) > 0 {
		t.Errorf("%d client-visible errors among %d GETs across two failovers; first ones: %v", len(errs), l.ok+len(errs), errs[:min(len(errs), 10)])
	} else {
		t.Logf("%d GETs across two failovers, 0 errors (by node: %v)", l.ok, l.byNode)
	}

	// HTTP/2 without TLS (h2c, prior knowledge).
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + hp.Addr + "/")
	if err != nil {
		t.Fatalf("h2c: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("h2c: %s %s, want 200 over HTTP/2", resp.Proto, resp.Status)
	}

	// A forged sticky cookie is ignored: the client is re-homed and the cookie rewritten.
	req, _ := http.NewRequest("GET", "http://"+hp.Addr+"/", nil)
	req.AddCookie(&http.Cookie{Name: "HAVEN_AFFINITY", Value: second + ".Zm9yZ2VkLWNvb2tpZS14eA"})
	resp, err = proxyClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var r sample.Reply
	_ = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if resp.StatusCode != 200 || r.Node != third || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "HAVEN_AFFINITY="+third+".") {
		t.Errorf("forged cookie: %d from %s, Set-Cookie %q; want 200 from %s and a cookie for it", resp.StatusCode, r.Node, resp.Header.Get("Set-Cookie"), third)
	}

	// Bad input.
	if l := rawRequest(t, hp.Addr, "NOT HTTP AT ALL, NOT EVEN CLOSE TO IT\r\n\r\n"); !strings.Contains(l, " 400 ") {
		t.Errorf("malformed request: %q, want 400", l)
	}
	if l := rawRequest(t, hp.Addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n"); !strings.Contains(l, " 431 ") {
		t.Errorf("oversized header: %q, want 431", l)
	}

	// Metrics.
	mresp, err := proxyClient.Get("http://" + hp.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, m := range []string{"haven_proxy_requests_total", "haven_proxy_retries_total", "haven_proxy_hold_seconds", "haven_proxy_request_seconds", `haven_proxy_target_info{node="` + third + `"} 1`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %s", m)
		}
	}

	// TLS termination: HTTP/2 by ALPN; SIGHUP reloads the certificate for
	// new connections and leaves open ones alone.
	tlsClient := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}}
	}
	tlsGet := func(c *http.Client, what string) *big.Int {
		t.Helper()
		resp, r, err := getReply(c, "https://"+sp.Addr+"/")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || r.Node != third {
			t.Fatalf("%s: %s %s from %q; want 200 over HTTP/2 from %s", what, resp.Proto, resp.Status, r.Node, third)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber
	}
	open := tlsClient()
	if s := tlsGet(open, "HTTPS through the proxy"); s.Cmp(serial1) != 0 {
		t.Fatalf("HTTPS: certificate %v, want %v", s, serial1)
	}
	serial2, err := ca.Issue(certFile, keyFile, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e2etest.WaitFor(t, 10*time.Second, "the proxy to present the new certificate after SIGHUP", func() bool {
		return tlsGet(tlsClient(), "HTTPS on a new connection after SIGHUP").Cmp(serial2) == 0
	})
	if s := tlsGet(open, "HTTPS on the connection opened before SIGHUP"); s.Cmp(serial1) != 0 {
		t.Errorf("after SIGHUP the open connection answered with certificate %v: it was dropped (want %v)", s, serial1)
	}
}

// TestProxyStoreLoss: a standalone proxy cut off from the store (the
// cluster is fine) keeps sending to the active it knows only while that
// node's lease could still be alive, then holds requests and answers 503
// with Retry-After when the hold times out; it serves again once the store
// is back.
func TestProxyStoreLoss(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	// The proxy reaches each etcd member through a forwarder the test can cut.
	var fwds []*storetest.Forwarder
	viaForwarders := func(cfg string) string {
		return clientAddr.ReplaceAllStringFunc(cfg, func(m string) string {
			f := storetest.Forward(t, strings.TrimPrefix(m, "client: "))
			fwds = append(fwds, f)
			return "client: " + f.Addr
		})
	}
	p := c.startProxy(t, "proxy-cut", "  hold_timeout: 300ms\n", viaForwarders)
	if len(fwds) != 3 {
		t.Fatalf("%d forwarders, want one per node", len(fwds))
	}
	active, _ := c.WaitActive(startTimeout)
	e2etest.WaitFor(t, 20*time.Second, "the proxy to reach "+active, func() bool {
		code, node, err := getNode(p.Addr)
		return err == nil && code == 200 && node == active
	})
	const lease = 3 * time.Second // testTimings
	cut := time.Now()
	for _, f := range fwds {
		f.Cut()
	}
	var lastOK, firstHeld time.Duration // when the request started, after the cut
	for firstHeld == 0 || time.Since(cut) < firstHeld+time.Second {
		if time.Since(cut) > 2*lease+5*time.Second {
			t.Fatalf("the proxy still sent to %s %s after it lost the store (last 200 for a request sent %s after the cut)", active, time.Since(cut), lastOK)
		}
		sent := time.Since(cut)
		resp, r, err := getReply(proxyClient, "http://"+p.Addr+"/")
		if err != nil {
			t.Fatalf("GET %s after the cut: %v", sent, err)
		}
		switch {
		case resp.StatusCode == 200 && r.Node == active:
			if firstHeld != 0 {
				t.Fatalf("a request sent %s after the cut reached %s after the proxy had begun to hold (at %s)", sent, active, firstHeld)
			}
			lastOK = sent
		case resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "":
			if firstHeld == 0 {
				firstHeld = sent
			}
		default:
			t.Fatalf("GET %s after the cut: %d from %q", sent, resp.StatusCode, r.Node)
		}
	}
	t.Logf("store cut: last request to %s sent %s after, first held %s after (lease %s)", active, lastOK, firstHeld, lease)
	if lastOK < lease/3 {
		t.Errorf("the proxy stopped sending to %s %s after losing the store; its view was good for the lease (%s) from its last check", active, lastOK, lease)
	}
	if lastOK > lease+200*time.Millisecond {
		t.Errorf("the proxy sent to %s %s after losing the store, past the %s lease it might have lost", active, lastOK, lease)
	}
	for _, f := range fwds {
		f.Heal()
	}
	e2etest.WaitFor(t, 20*time.Second, "the proxy to serve again once the store is back", func() bool {
		code, node, err := getNode(p.Addr)
		return err == nil && code == 200 && node == active
	})
}

// TestProxyBackendTLS: services that speak only HTTPS (certificates from a
// CA the proxy is given in backend_tls.ca_file, and the agents' https
// checks in their ca_file), reached through a real haven proxy, before and
// after a failover.
func TestProxyBackendTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := certs.NewCA("haven e2e backend CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "svc.pem"), filepath.Join(dir, "svc.key")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Issue(cert, key, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, clusterOpts{extra: fmt.Sprintf(`service:
  command: [%q, "sample-service", "--tls-cert", %q, "--tls-key", %q]
  restart: always
  restart_delay: 100ms
checks:
  - name: sample
    http: {url: "https://${SERVICE_ADDR}/healthz", ca_file: %q}
    interval: 100ms
    timeout: 100ms
    rise: 1
    fall: 1
`, havenBin, cert, key, caFile)})
	p := c.startProxy(t, "proxy-backend-tls", fmt.Sprintf("  backend_tls: {enabled: true, ca_file: %s}\n", caFile))
	// WaitActive asks the services over plain HTTP; these speak HTTPS only,
	// so the active is the one node whose /lb-check answers 200.
	activeByLB := func(d time.Duration, exclude string) string {
		var name string
		e2etest.WaitFor(t, d, "one node answering /lb-check 200", func() bool {
			var found []string
			for _, n := range c.Nodes {
				if n.Name != exclude && c.LBCheck(n.Name) == http.StatusOK {
					found = append(found, n.Name)
				}
			}
			if len(found) == 1 {
				name = found[0]
			}
			return len(found) == 1
		})
		return name
	}
	first := activeByLB(startTimeout, "")
	// A plain-HTTP request to these services gets 400, so a sample.Reply
	// from the node proves the proxy spoke TLS to it.
	e2etest.WaitFor(t, 20*time.Second, "the proxy to reach "+first+" over TLS", func() bool {
		code, node, err := getNode(p.Addr)
		return err == nil && code == 200 && node == first
	})
	c.KillService(first)
	second := activeByLB(15*time.Second, first)
	e2etest.WaitFor(t, 20*time.Second, "the proxy to reach "+second+" over TLS", func() bool {
		code, node, err := getNode(p.Addr)
		return err == nil && code == 200 && node == second
	})
}

var clientAddr = regexp.MustCompile(`client: 127\.0\.0\.1:\d+`)

// proxyCert makes a CA and a certificate for 127.0.0.1 in dir, for a proxy's tls: section.
func proxyCert(t *testing.T, dir string) (ca *certs.CA, certFile, keyFile string, serial *big.Int) {
	t.Helper()
	ca, err := certs.NewCA("haven e2e CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "proxy-cert.pem"), filepath.Join(dir, "proxy-key.pem")
	if serial, err = ca.Issue(certFile, keyFile, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	return ca, certFile, keyFile, serial
}

// tcpGet opens a connection through the TCP proxy, asks GET / over it
// (keeping it open) and checks that want answered.
func tcpGet(t *testing.T, addr string, _ any, want string) (net.Conn, *bufio.Reader) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: tcp\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			var r sample.Reply
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if resp.StatusCode == 200 && r.Node == want {
				_ = conn.SetDeadline(time.Time{})
				return conn, br
			}
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("TCP proxy: no answer from %s (last: %v)", want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, req)
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// posts sends POSTs without an Idempotency-Key in a loop: each must end
// with 200, or 502/503 with Retry-After — never hang or fail otherwise.
type posts struct {
	stop        chan struct{}
	done        chan struct{}
	ok, refused atomic.Int64
	mu          sync.Mutex
	bad         []string
}

func startPosts(t *testing.T, addr string) *posts {
	p := &posts{stop: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Timeout: 15 * time.Second}
	go func() {
		defer close(p.done)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			body := fmt.Sprintf("order %d", i)
			resp, err := c.Post("http://"+addr+"/echo", "text/plain", strings.NewReader(body))
			if err != nil {
				p.note(fmt.Sprintf("POST: %v", err))
				continue
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200 && string(got) == body:
				p.ok.Add(1)
			case (resp.StatusCode == 502 || resp.StatusCode == 503) && resp.Header.Get("Retry-After") != "":
				p.refused.Add(1)
			default:
				p.note(fmt.Sprintf("POST: %d %q", resp.StatusCode, got))
			}
		}
	}()
	return p
}

func (p *posts) note(s string) {
	p.mu.Lock()
	p.bad = append(p.bad, s)
	p.mu.Unlock()
}

func (p *posts) finish(t *testing.T) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("POSTs without Idempotency-Key: %d ok, %d refused with Retry-After", p.ok.Load(), p.refused.Load())
	if len(p.bad) > 0 {
		t.Errorf("POSTs answered neither 200 nor 502/503 with Retry-After: %v", p.bad[:min(len(p.bad), 10)])
	}
	if p.ok.Load() == 0 {
		t.Errorf("no POST succeeded")
	}
}
