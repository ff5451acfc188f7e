// Package check runs the health checks of the local service (http, tcp and
// exec probes) and folds their results, with rise/fall hysteresis, into one
// healthy/unhealthy verdict that the agent combines with process liveness.
//
// A Checker is a single probe; a Runner schedules several of them, each on its
// own ticker, and publishes the aggregate whenever it changes.
package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/haven-ha/haven/internal/expand"
	"github.com/haven-ha/haven/internal/procstart"
)

// Options describe one check (the config's checks: entry). Exactly one of
// HTTP, TCP, Exec is set. All checks must pass for the node to be healthy.
type Options struct {
	Name     string
	HTTP     *HTTP
	TCP      *TCP
	Exec     *Exec
	Disk     *Disk
	Interval time.Duration
	Timeout  time.Duration
	Rise     int // consecutive successes to become healthy
	Fall     int // consecutive failures to become unhealthy
}

// HTTP passes when GET URL answers ExpectStatus.
type HTTP struct {
	URL          string
	ExpectStatus int
	CAFile       string // https: PEM bundle to verify the service with; empty: the system's
	ServerName   string // https: name to verify; empty: the URL's host
}

// TCP passes when Address accepts a connection.
type TCP struct{ Address string }

// Exec passes when Command exits 0.
type Exec struct{ Command []string }

// Disk passes while the file system holding Path has at least
// MinFreeBytes and MinFreePercent free (for unprivileged users): a node
// whose disk is nearly full is not eligible, and an active hands over
// before its disk fills.
type Disk struct {
	Path           string // may use ${VAR}s of the node's env
	MinFreeBytes   int64
	MinFreePercent float64
}

// Checker is one health probe of the local service.
type Checker interface {
	// Name identifies the check in reasons, logs and metrics.
	Name() string
	// Check probes once. It returns nil on a pass and a short error saying what
	// failed otherwise. It gives up when ctx ends or the check's Timeout
	// passes, whichever comes first.
	Check(ctx context.Context) error
}

// Limits on what a probe reads.
const (
	execOutputMax = 200     // bytes of an exec check's output kept for its error
	httpDrainMax  = 1 << 20 // bytes of an HTTP response body read before closing
	execWaitDelay = 100 * time.Millisecond
)

// New builds the checker described by c. ${VAR} in its URL, address and
// command is expanded from vars, and vars are added to an exec check's
// environment. A Timeout of zero falls back to the Interval.
func New(c Options, vars map[string]string) (Checker, error) {
	kinds := 0
	for _, set := range []bool{c.HTTP != nil, c.TCP != nil, c.Exec != nil, c.Disk != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return nil, fmt.Errorf("check %q: exactly one of http, tcp, exec, disk must be set (found %d)", c.Name, kinds)
	}
	if c.Disk != nil {
		return newDiskCheck(c, vars)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = c.Interval
	}
	base := probe{name: c.Name, timeout: timeout}
	switch {
	case c.HTTP != nil:
		raw := expand.String(c.HTTP.URL, vars)
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("check %q: url %q: %w", c.Name, raw, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("check %q: url %q: want http://host[:port]/path or https://…", c.Name, raw)
		}
		want := c.HTTP.ExpectStatus
		if want == 0 {
			want = http.StatusOK
		}
		if base.name == "" {
			base.name = "http " + raw
		}
		var tlsCfg *tls.Config
		if c.HTTP.CAFile != "" || c.HTTP.ServerName != "" {
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.HTTP.ServerName}
			if c.HTTP.CAFile != "" {
				pem, err := os.ReadFile(c.HTTP.CAFile)
				if err != nil {
					return nil, fmt.Errorf("check %q: ca_file: %w", c.Name, err)
				}
				tlsCfg.RootCAs = x509.NewCertPool()
				if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("check %q: ca_file %s holds no PEM certificate; give the CA that signed the service's certificate", c.Name, c.HTTP.CAFile)
				}
			}
		}
		return &httpCheck{probe: base, url: raw, want: want, client: newHTTPClient(tlsCfg)}, nil
	case c.TCP != nil:
		addr := expand.String(c.TCP.Address, vars)
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("check %q: address %q: %w", c.Name, addr, err)
		}
		if base.name == "" {
			base.name = "tcp " + addr
		}
		return &tcpCheck{probe: base, addr: addr}, nil
	default:
		argv := expand.All(c.Exec.Command, vars)
		if len(argv) == 0 || argv[0] == "" {
			return nil, fmt.Errorf("check %q: exec command is empty", c.Name)
		}
		if base.name == "" {
			base.name = "exec " + argv[0]
		}
		env := append(os.Environ(), expand.Environ(vars)...)
		return &execCheck{probe: base, argv: argv, env: env}, nil
	}
}

// probe holds what every kind of check shares.
type probe struct {
	name    string
	timeout time.Duration
}

func (p probe) Name() string { return p.name }

// withTimeout bounds one probe by the check's timeout.
func (p probe) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if p.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.timeout)
}

// failure is a check error: a short message for people, with the underlying
// error still reachable through errors.Is/As.
type failure struct {
	msg string
	err error
}

func (f *failure) Error() string { return f.msg }
func (f *failure) Unwrap() error { return f.err }

// fail describes err, which happened while probing what, in a few words:
// "tcp 127.0.0.1:8101: connection refused" rather than Go's full chain.
func (p probe) fail(ctx context.Context, what string, err error) error {
	return &failure{msg: what + ": " + p.short(ctx, err), err: err}
}

func (p probe) short(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
		if p.timeout > 0 {
			return "timed out after " + p.timeout.String()
		}
		return "timed out"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err.Error()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// httpCheck passes when GET url answers want. It has its own client so that
// it shares no connections with anything else. It keeps its connection
// between probes (a new TCP connection every 100 ms, with the server's
// accept and close, was the largest part of an idle agent's checking, see
// docs/benchmarks.md), but opens a fresh one at least every httpFreshEvery
// probes and after every failure: a server that stops accepting new
// connections while it still answers on an old one is seen within that
// many probes. A server that dies or closes the connection is seen on the
// very next probe, as before: the kept connection is gone with it.
type httpCheck struct {
	probe
	url    string
	want   int
	client *http.Client
	probes atomic.Uint64
}

// CloseIdleConnections closes the kept connection (Run does when it ends).
func (c *httpCheck) CloseIdleConnections() { c.client.CloseIdleConnections() }

// httpFreshEvery bounds how many probes in a row one kept connection serves.
const httpFreshEvery = 10

func newHTTPClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil, // a local probe must not go through HTTP_PROXY
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Minute,
			DialContext:         (&net.Dialer{}).DialContext,
			TLSClientConfig:     tlsCfg, // nil: the system's roots
		},
		// A redirect is an answer too: report its status rather than follow it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (c *httpCheck) Check(ctx context.Context) error {
	if c.probes.Add(1)%httpFreshEvery == 0 {
		c.client.CloseIdleConnections()
	}
	err := c.check(ctx)
	if err != nil {
		c.client.CloseIdleConnections()
	}
	return err
}

func (c *httpCheck) check(ctx context.Context) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	what := "http " + c.url
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return c.fail(ctx, what, err)
	}
	req.Header.Set("User-Agent", "haven-check")
	resp, err := c.client.Do(req)
	if err != nil {
		return c.fail(ctx, what, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, httpDrainMax))
	resp.Body.Close()
	if resp.StatusCode != c.want {
		return &failure{msg: fmt.Sprintf("%s: status %d, want %d", what, resp.StatusCode, c.want)}
	}
	return nil
}

// tcpCheck passes when addr accepts a connection.
type tcpCheck struct {
	probe
	addr string
}

func (c *tcpCheck) Check(ctx context.Context) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return c.fail(ctx, "tcp "+c.addr, err)
	}
	conn.Close()
	return nil
}

// execCheck passes when its command exits 0. The command runs in its own
// process group; on timeout the whole group is killed, so a shell script's
// children do not outlive the probe.
type execCheck struct {
	probe
	argv []string
	env  []string
}

func (c *execCheck) Check(ctx context.Context) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	what := "exec " + strings.Join(c.argv, " ")
	var out headBuffer
	out.max = execOutputMax
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Env = c.env
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	// Without a bound, Wait would also wait for any background child that
	// still holds the output pipe.
	cmd.WaitDelay = execWaitDelay
	err := procstart.Run(cmd) // Pdeathsig: fork from a thread that outlives the child
	if cmd.Process != nil {
		// A check must not leave processes behind.
		_ = killGroup(cmd.Process.Pid)
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // exited 0; a leftover child kept the output open
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return c.fail(ctx, what, ctx.Err())
	}
	msg := what + ": " + c.short(ctx, err)
	if o := strings.TrimSpace(out.String()); o != "" {
		msg += ": " + o
	}
	return &failure{msg: msg, err: err}
}

// killGroup sends SIGKILL to the process group led by pid.
func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// headBuffer keeps the first max bytes written to it and discards the rest.
type headBuffer struct {
	max int
	b   []byte
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (h *headBuffer) String() string { return string(h.b) }
