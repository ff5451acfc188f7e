package certs_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/ports"
	"github.com/haven-ha/haven/internal/syncbuf"
)

const clusterToken = "certs-test-token-0123456789"

// TestNoPortServesStrangers runs a real 3-node cluster with TLS and
// api.lb_check_listen, finds every port its agents listen on with
// `ss -ltnp`, and tries each with no certificate, a certificate of another
// CA and an expired certificate of the cluster's own CA: none reads
// anything but /lb-check, /healthz and the dashboard's login page, none
// changes anything (the leader key survives etcd's deleterange, the role
// does not move), and the only plaintext listener is the lb-check one.
func TestNoPortServesStrangers(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Fatalf("ss (iproute2) is needed: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "haven")
	build := exec.Command("go", "build", "-o", bin, "github.com/haven-ha/haven/cmd/haven")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build haven: %v\n%s", err, out)
	}
	ports, err := ports.Free(12)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: sec\ndata_dir: %s\n", filepath.Join(dir, "data"))
	b.WriteString(harness.CITimings + "\n")
	fmt.Fprintf(&b, "api: {token: %s, status_open: false, lb_check_listen: \"127.0.0.1:${LB_PORT}\"}\n", clusterToken)
	cd := filepath.Join(dir, "certs")
	fmt.Fprintf(&b, "tls: {ca_file: %q, cert_file: %q, key_file: %q}\nnodes:\n", filepath.Join(cd, "ca.crt"), filepath.Join(cd, "${NODE}.crt"), filepath.Join(cd, "${NODE}.key"))
	var apis []string
	for i := range 3 {
		p := ports[4*i:]
		apis = append(apis, fmt.Sprintf("127.0.0.1:%d", p[0]))
		fmt.Fprintf(&b, "  - {name: n%d, api: \"127.0.0.1:%d\", peer: \"127.0.0.1:%d\", client: \"127.0.0.1:%d\", env: {LB_PORT: \"%d\"}}\n", i+1, p[0], p[1], p[2], p[3])
	}
	b.WriteString("service:\n  command: [sleep, \"3600\"]\n")
	cfgPath := filepath.Join(dir, "haven.yaml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.InitFor(cd, cfg); err != nil {
		t.Fatal(err)
	}

	// The strangers: no certificate, another CA's, and the cluster CA's
	// own but expired.
	other, err := certs.NewCA("another cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign")
	if _, err := other.IssueFiles(foreign+".crt", foreign+".key", certs.IssueOptions{Name: "n1", Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	ca, err := certs.LoadCA(certs.Layout(cd))
	if err != nil {
		t.Fatal(err)
	}
	expired := filepath.Join(dir, "expired")
	if _, err := ca.IssueFiles(expired+".crt", expired+".key", certs.IssueOptions{Name: "n1", Hosts: []string{"127.0.0.1"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	pool := ca.Pool()
	strangers := map[string]*tls.Config{
		"no certificate": {RootCAs: pool},
		"another CA":     withCert(t, pool, foreign),
		"expired":        withCert(t, pool, expired),
	}

	// Start the agents.
	var pids []int
	logs := map[string]*syncbuf.Buffer{}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		buf := &syncbuf.Buffer{}
		logs[name] = buf
		p, err := harness.Start("", buf, bin, "agent", "--config", cfgPath, "--node", name)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, p.Pid())
		t.Cleanup(func() {
			harness.Stop(10*time.Second, p)
			if t.Failed() {
				t.Logf("---- log of %s ----\n%s", name, tail(buf.String(), 3000))
			}
		})
	}
	opTLS, err := certs.ClientTLS(certs.Files(cfg.TLS.For(certs.Operator)))
	if err != nil {
		t.Fatal(err)
	}
	op := api.NewClient(api.ClientOptions{Token: clusterToken, Timeout: time.Second, TLS: opTLS})
	active, epoch := waitActive(t, op, apis, 60*time.Second)

	// Every listening port of the agents, from ss, once every agent has
	// opened its listeners (one may still be starting when another is
	// active).
	want := 3 * 4 // api, peer, client and lb-check per node
	var listening []string
	harness.Until(30*time.Second, func() bool {
		listening = agentPorts(t, pids)
		return len(listening) >= want
	})
	if len(listening) < want {
		t.Fatalf("ss found %d listening ports for the agents (%v), want at least %d", len(listening), listening, want)
	}
	lbCheck := map[string]bool{}
	for i := range 3 {
		lbCheck[fmt.Sprintf("127.0.0.1:%d", ports[4*i+3])] = true
	}
	leaderKey := "/haven/sec/leader"
	for _, addr := range listening {
		// A plaintext listener answers a plain request with something
		// other than Go's "HTTP request to an HTTPS server" 400.
		plain := plainAnswer(addr)
		if lbCheck[addr] {
			if !strings.HasPrefix(plain, "HTTP/1.1 200") && !strings.HasPrefix(plain, "HTTP/1.1 503") {
				t.Errorf("lb-check listener %s: %q", addr, firstLine(plain))
			}
			for _, path := range []string{"/status", "/v1/events", "/metrics", "/v1/role"} {
				if code := plainGet(t, "http://"+addr+path); code != http.StatusNotFound {
					t.Errorf("the plain lb-check listener answers %s with %d, want 404", path, code)
				}
			}
			continue
		}
		if plain != "" && !strings.Contains(plain, "HTTP request to an HTTPS server") {
			t.Errorf("%s answers plaintext: %q", addr, firstLine(plain))
		}
		for who, tc := range strangers {
			hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
			base := "https://" + addr
			// etcd: the request from the issue, and a range read of everything.
			del := fmt.Sprintf(`{"key":%q}`, b64(leaderKey))
			if code, body := post(hc, base+"/v3/kv/deleterange", del); code == http.StatusOK {
				t.Errorf("%s: %s deleted the leader key on %s: %s", who, "deleterange", addr, body)
			}
			if code, body := post(hc, base+"/v3/kv/range", fmt.Sprintf(`{"key":%q,"range_end":%q}`, b64("\x00"), b64("\x00"))); code == http.StatusOK {
				t.Errorf("%s read the store on %s: %s", who, addr, body)
			}
			// The agent API: reads and actions.
			for _, path := range []string{"/status", "/v1/events", "/v1/members", "/v1/logs", "/v1/kv/x?epoch=1"} {
				if code := get(hc, base+path); code == http.StatusOK {
					t.Errorf("%s read %s on %s", who, path, addr)
				}
			}
			for _, path := range []string{"/v1/switchover", "/v1/maintenance", "/v1/promote", "/v1/service", "/v1/members", "/v1/failsafe"} {
				if code, _ := post(hc, base+path, `{"node":"n1","on":true,"action":"stop","to":"n2","from":"n2","grant_ms":1000}`); code == http.StatusOK {
					t.Errorf("%s did %s on %s", who, path, addr)
				}
			}
			// With the token but a bad certificate: TLS must still refuse.
			// (No certificate is allowed on the API: the token is the
			// credential there, as for a browser.)
			if who != "no certificate" {
				req, _ := http.NewRequest(http.MethodGet, base+"/status", nil)
				req.Header.Set("Authorization", "Bearer "+clusterToken)
				if resp, err := hc.Do(req); err == nil {
					resp.Body.Close()
					t.Errorf("%s got an answer (%d) from %s: the handshake should fail", who, resp.StatusCode, addr)
				}
			}
		}
	}
	// Rotation: a new certificate for n1. etcd uses it for new handshakes
	// at once; the agent API after SIGHUP, while a connection opened
	// before keeps working.
	n1API, n1Client := apis[0], fmt.Sprintf("127.0.0.1:%d", ports[2])
	oldAPI, oldEtcd := serialAt(t, n1API, opTLS), serialAt(t, n1Client, opTLS)
	keep := &http.Client{Transport: api.NewTransport(opTLS), Timeout: 3 * time.Second}
	if code := get(keep, "https://"+n1API+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz before the rotation: %d", code)
	}
	if err := certs.Add(cd, certs.NodesOf(cfg)[0]); err != nil {
		t.Fatal(err)
	}
	if now := serialAt(t, n1Client, opTLS); now == oldEtcd {
		t.Error("n1's etcd member still presents the old certificate to a new connection")
	}
	if now := serialAt(t, n1API, opTLS); now != oldAPI {
		t.Error("n1's API changed its certificate before SIGHUP")
	}
	if err := syscall.Kill(pids[0], syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for serialAt(t, n1API, opTLS) == oldAPI {
		if time.Now().After(deadline) {
			t.Fatal("n1's API still presents the old certificate 10s after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := get(keep, "https://"+n1API+"/healthz"); code != http.StatusOK {
		t.Errorf("the connection opened before the rotation: %d", code)
	}
	deadline = time.Now().Add(10 * time.Second)
	for reloaded := false; !reloaded; {
		evs, _ := op.Events(context.Background(), apis[1], 200)
		for _, e := range evs {
			reloaded = reloaded || (e.Node == "n1" && e.Kind == "tls" && e.To == "reloaded")
		}
		if !reloaded && time.Now().After(deadline) {
			t.Fatal("no tls reloaded event from n1 in the history")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Nothing moved.
	if now, e := waitActive(t, op, apis, 10*time.Second); now != active || e != epoch {
		t.Fatalf("the active moved from %s@%d to %s@%d", active, epoch, now, e)
	}
	evs, err := op.Events(context.Background(), apis[0], 200)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if strings.Contains(e.Reason, "leader key lost") {
			t.Errorf("event: %+v", e)
		}
	}
	// The refusals are logged: by the agents' HTTPS servers and by etcd.
	all := ""
	for _, l := range logs {
		all += l.String()
	}
	if !strings.Contains(all, "TLS handshake error") {
		t.Error("the agents' logs do not mention the refused TLS handshakes")
	}
	etcdLog, _ := os.ReadFile(filepath.Join(dir, "data", "n1", "etcd.log"))
	if !strings.Contains(string(etcdLog), "rejected connection") {
		t.Errorf("n1's etcd log does not mention the rejected connections:\n%s", tail(string(etcdLog), 2000))
	}
}

func withCert(t *testing.T, pool *x509.CertPool, base string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(base+".crt", base+".key")
	if err != nil {
		t.Fatal(err)
	}
	// Present it whatever CAs the server asks for (Go's client would
	// otherwise send none of another CA's).
	return &tls.Config{RootCAs: pool, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }}
}

// serialAt is the serial number of the certificate the server at addr
// presents to a new connection.
func serialAt(t *testing.T, addr string, tc *tls.Config) string {
	t.Helper()
	tc = tc.Clone()
	tc.ClientSessionCache = nil // a resumed session shows the certificate of its first handshake
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, tc)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func waitActive(t *testing.T, c *api.Client, apis []string, d time.Duration) (string, int64) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, a := range apis {
			st, err := c.Status(context.Background(), a)
			if err == nil && !st.Leader.None() {
				for _, n := range st.Nodes {
					if n.Name == st.Leader.Node && n.Role == "active" {
						return n.Name, int64(n.Epoch)
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no active node within %v", d)
	return "", 0
}

var ssUsers = regexp.MustCompile(`pid=(\d+)`)

// agentPorts lists the TCP addresses on which the processes pids listen.
func agentPorts(t *testing.T, pids []int) []string {
	t.Helper()
	out, err := exec.Command("ss", "-Hltnp").Output()
	if err != nil {
		t.Fatalf("ss -ltnp: %v", err)
	}
	own := map[int]bool{}
	for _, p := range pids {
		own[p] = true
	}
	var addrs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		for _, m := range ssUsers.FindAllStringSubmatch(sc.Text(), -1) {
			if p, _ := strconv.Atoi(m[1]); own[p] {
				addrs = append(addrs, f[3])
				break
			}
		}
	}
	return addrs
}

// plainAnswer sends a plaintext HTTP request and returns what came back
// ("" when the server closed or said nothing).
func plainAnswer(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.WriteString(c, "GET /lb-check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(io.LimitReader(c, 4096))
	return string(b)
}

func plainGet(t *testing.T, url string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func get(hc *http.Client, url string) int {
	resp, err := hc.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func post(hc *http.Client, url, body string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
