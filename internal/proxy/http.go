package proxy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Idempotent reports whether a request may be sent twice: GET, HEAD,
// OPTIONS and TRACE by their method, anything else when the client vouches
// for it with an Idempotency-Key header.
func Idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return r.Header.Get("Idempotency-Key") != ""
}

// stage says how far a round trip got before it failed, which decides
// whether it may be retried.
type stage int

const (
	stageConnect    stage = iota // nothing sent: always safe to retry
	stageNoResponse              // sent (maybe processed), no response byte: retry if idempotent
	stageResponse                // a response started: never retried
)

type rtError struct {
	stage  stage
	err    error
	reused bool // on a kept connection
}

func (e *rtError) Error() string { return e.err.Error() }
func (e *rtError) Unwrap() error { return e.err }

// ServeHTTP forwards one request, holding it while no node takes traffic
// and retrying it where that is safe.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := p.clk.Now()
	st := &reqState{w: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			p.metrics.fail("panic")
			p.log.Error("panic while proxying; answered 502", "panic", v, "method", r.Method, "path", r.URL.Path, "stack", string(debug.Stack()))
			if !st.wrote {
				p.fail(st, "", http.StatusBadGateway, "haven proxy: internal error")
			} else {
				panic(http.ErrAbortHandler)
			}
		}
		if p.cfg.AccessLog {
			p.log.Info("request", "method", r.Method, "host", r.Host, "path", r.URL.Path, "proto", r.Proto,
				"client", r.RemoteAddr, "code", st.code, "backend", st.backend, "tries", st.tries, "ms", p.clk.Since(start).Milliseconds())
		}
	}()
	if isUpgrade(r) {
		p.serveUpgrade(st, r, start)
		return
	}
	limit := p.cfg.Limits.MaxBodyBytes
	if r.ContentLength > limit {
		p.metrics.fail("body_too_large")
		p.fail(st, "", http.StatusRequestEntityTooLarge, fmt.Sprintf("haven proxy: request body over %d bytes", limit))
		return
	}
	idem := Idempotent(r)
	var body []byte // a replayable body, for idempotent requests
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if idem {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				p.bodyError(st, err)
				return
			}
			body, hasBody = b, len(b) > 0
			if !hasBody {
				body = nil
			}
		}
	}
	ctx := r.Context()
	deadline := start.Add(p.cfg.HoldTimeout)
	var after uint64
	staleRetried := false
	// unsure: an earlier try reached a node that failed before answering,
	// so the request may have taken effect there. A later 503 ("nothing
	// done", from a node or the hold) must not then pass for its outcome:
	// the client would take a write that committed for one that did not.
	unsure := false
	for attempt := 0; ; attempt++ {
		ts, err := p.waitTargets(ctx, deadline, after)
		if err != nil {
			if unsure && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
				p.fail(st, "", http.StatusBadGateway, unsureMsg)
				return
			}
			p.holdFailed(st, err)
			return
		}
		b := p.choose(ts, r, st)
		st.backend, st.tries = b.name, attempt+1
		if attempt > 0 {
			p.metrics.retries.Inc()
		}
		sent := p.clk.Now()
		resp, c, err := p.roundTrip(ctx, b, r, body, hasBody && body == nil)
		if err != nil {
			var re *rtError
			errors.As(err, &re)
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe):
				p.bodyError(st, err)
				return
			case ctx.Err() != nil:
				st.code = 499 // the client left; nobody to answer
				return
			}
			kind := map[stage]string{stageConnect: "connect", stageNoResponse: "no_response", stageResponse: "mid_response"}[re.stage]
			p.metrics.fail(kind)
			if re.stage != stageConnect && !safeMethod(r.Method) {
				// Sent: it may have taken effect, even on a kept
				// connection. One the backend had closed while idle
				// looks the same as a node that took the request and
				// died before answering (kill -9 of its agent).
				unsure = true
			}
			if re.reused && re.stage == stageNoResponse && idem && !staleRetried {
				// Likely a kept connection the backend had closed: one
				// more try on a fresh one says nothing against the node.
				staleRetried = true
				b.pool.closeIdle() // likely as stale: the next try dials
				attempt--
				continue
			}
			p.suspect(b, sent)
			retryable := re.stage == stageConnect && (body != nil || !hasBody) || re.stage == stageNoResponse && idem
			if retryable && attempt < p.cfg.Retries {
				p.log.Debug("retrying", "node", b.name, "stage", kind, "err", err)
				after = ts.gen
				continue
			}
			code := http.StatusBadGateway
			if re.stage == stageConnect && !unsure {
				code = http.StatusServiceUnavailable
			}
			p.fail(st, b.name, code, "haven proxy: the active node failed before answering; retry")
			return
		}
		if resp.StatusCode == http.StatusServiceUnavailable && idem && attempt < p.cfg.Retries {
			// The node says it is not serving (demoting, fenced): ask again
			// once the proxy knows who serves now.
			p.finish(b, c, resp, false)
			p.suspect(b, sent)
			after = ts.gen
			continue
		}
		if resp.StatusCode == http.StatusServiceUnavailable && unsure {
			p.finish(b, c, resp, false)
			p.fail(st, b.name, http.StatusBadGateway, unsureMsg)
			return
		}
		b.latency.Observe(p.clk.Since(sent).Seconds())
		if resp.StatusCode != http.StatusServiceUnavailable {
			b.markServed(sent)
		}
		p.respond(st, b, c, r, resp, sent)
		return
	}
}

// safeMethod reports whether a request has no effect by its method, so
// that whether it reached a node does not matter.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// unsureMsg answers a request whose outcome is unknown (see unsure).
const unsureMsg = "haven proxy: an earlier try reached the active node, which failed before answering, so the request may or may not have taken effect; retry it with the same Idempotency-Key"

// reqState is what the handler knows about its answer, for logs and for
// the panic guard.
type reqState struct {
	w       http.ResponseWriter
	wrote   bool
	code    int
	backend string
	tries   int
}

func (p *Proxy) holdFailed(st *reqState, err error) {
	switch {
	case errors.Is(err, errQueueFull):
		p.metrics.fail("queue_full")
		p.fail(st, "", http.StatusServiceUnavailable, "haven proxy: too many requests waiting for an active node; retry")
	case errors.Is(err, errHoldTimeout):
		p.metrics.fail("hold_timeout")
		p.fail(st, "", http.StatusServiceUnavailable, "haven proxy: no active node; retry")
	default:
		st.code = 499
	}
}

func (p *Proxy) bodyError(st *reqState, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		p.metrics.fail("body_too_large")
		p.fail(st, "", http.StatusRequestEntityTooLarge, fmt.Sprintf("haven proxy: request body over %d bytes", mbe.Limit))
		return
	}
	p.fail(st, "", http.StatusBadRequest, "haven proxy: cannot read the request body")
}

// fail answers with an error of the proxy's own; 5xx ones say when to retry.
func (p *Proxy) fail(st *reqState, backend string, code int, msg string) {
	h := st.w.Header()
	for k := range h {
		if k != "Set-Cookie" {
			delete(h, k)
		}
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if code >= 500 {
		h.Set("Retry-After", retryAfter)
	}
	if code == http.StatusRequestEntityTooLarge {
		h.Set("Connection", "close")
	}
	st.w.WriteHeader(code)
	_, _ = io.WriteString(st.w, msg+"\n")
	st.wrote, st.code = true, code
	p.metrics.request(backend, code)
}

// choose picks the node for r among ts, applying the sticky mode.
func (p *Proxy) choose(ts *targetSet, r *http.Request, st *reqState) *backend {
	s := p.cfg.Sticky
	switch s.Mode {
	case AffinityCookie:
		key := ""
		if c, err := r.Cookie(s.Cookie); err == nil {
			if node, ok := p.signer.Verify(c.Value); ok {
				if b := ts.get(node); b != nil {
					return b
				}
			}
			key = c.Value // forged, corrupt or its node left: re-home consistently
		}
		if key == "" {
			var rnd [12]byte
			_, _ = rand.Read(rnd[:])
			key = base64.RawURLEncoding.EncodeToString(rnd[:])
		}
		b := ts.get(hrw(key, ts.names))
		h := st.w.Header()
		h.Del("Set-Cookie")
		h.Add("Set-Cookie", (&http.Cookie{
			Name: s.Cookie, Value: p.signer.Sign(b.name), Path: "/", HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
		}).String())
		return b
	case AffinityHeader:
		if len(ts.nodes) == 1 {
			return ts.nodes[0]
		}
		key := r.Header.Get(s.Header)
		if key == "" {
			key = clientIP(r.RemoteAddr)
		}
		return ts.get(hrw(key, ts.names))
	case AffinitySource:
		if len(ts.nodes) == 1 {
			return ts.nodes[0]
		}
		return ts.get(hrw(clientIP(r.RemoteAddr), ts.names))
	}
	if len(ts.nodes) == 1 {
		return ts.nodes[0]
	}
	return ts.nodes[p.rr.Add(1)%uint64(len(ts.nodes))]
}

func clientIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// hopHeaders are meaningful for one connection only and never forwarded.
func isHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// connectionTokens lists the extra headers a Connection header names.
func connectionTokens(h []string) map[string]bool {
	if len(h) == 0 {
		return nil
	}
	m := map[string]bool{}
	for _, v := range h {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				m[http.CanonicalHeaderKey(t)] = true
			}
		}
	}
	return m
}

// writeHead writes the request line and headers for the backend.
func (p *Proxy) writeHead(c *bconn, r *http.Request, upgrade bool) {
	bw := c.bw
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(r.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	drop := connectionTokens(r.Header["Connection"])
	for k, vv := range r.Header {
		if isHop(k) || drop[k] {
			continue
		}
		switch k {
		case "Content-Length", "Expect", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Via":
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	ip := clientIP(r.RemoteAddr)
	bw.WriteString("X-Forwarded-For: ")
	if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 {
		bw.WriteString(strings.Join(prior, ", "))
		bw.WriteString(", ")
	}
	bw.WriteString(ip)
	if r.TLS != nil {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: ")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ")
	}
	bw.WriteString(r.Host)
	bw.WriteString("\r\nVia: ")
	if prior := r.Header["Via"]; len(prior) > 0 {
		bw.WriteString(strings.Join(prior, ", "))
		bw.WriteString(", ")
	}
	if r.ProtoMajor == 2 {
		bw.WriteString("2.0 haven\r\n")
	} else {
		bw.WriteString("1.1 haven\r\n")
	}
	if upgrade {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(r.Header.Get("Upgrade"))
		bw.WriteString("\r\n")
	}
}

// roundTrip sends r to b and reads the response head. body is the buffered
// body of an idempotent request; stream says the body is read from r as it
// is sent (it cannot be sent again).
func (p *Proxy) roundTrip(ctx context.Context, b *backend, r *http.Request, body []byte, stream bool) (*http.Response, *bconn, error) {
	c, err := b.pool.get(ctx, body == nil && !Idempotent(r))
	if err != nil {
		return nil, nil, &rtError{stage: stageConnect, err: err}
	}
	// A client that leaves cuts the backend connection, which ends the
	// blocking reads and writes below.
	c.stop = context.AfterFunc(ctx, c.cut)
	p.writeHead(c, r, false)
	switch {
	case body != nil:
		c.bw.WriteString("Content-Length: ")
		c.bw.WriteString(strconv.Itoa(len(body)))
		c.bw.WriteString("\r\n\r\n")
		c.bw.Write(body)
	case stream && r.ContentLength > 0:
		c.bw.WriteString("Content-Length: ")
		c.bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
		c.bw.WriteString("\r\n\r\n")
		if _, err := io.CopyN(c.bw, r.Body, r.ContentLength); err != nil {
			p.release(b, c, false)
			if isClientBodyErr(err) {
				return nil, nil, err
			}
			return nil, nil, &rtError{stage: stageNoResponse, err: err, reused: c.reused}
		}
	case stream:
		c.bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(c.bw)
		if _, err := io.Copy(cw, r.Body); err != nil {
			p.release(b, c, false)
			if isClientBodyErr(err) {
				return nil, nil, err
			}
			return nil, nil, &rtError{stage: stageNoResponse, err: err, reused: c.reused}
		}
		cw.Close()
		c.bw.WriteString("\r\n")
	default:
		c.bw.WriteString("\r\n")
	}
	if err := c.bw.Flush(); err != nil {
		p.release(b, c, false)
		return nil, nil, &rtError{stage: stageNoResponse, err: err, reused: c.reused}
	}
	for {
		if _, err := c.br.Peek(1); err != nil {
			p.release(b, c, false)
			return nil, nil, &rtError{stage: stageNoResponse, err: err, reused: c.reused}
		}
		resp, err := http.ReadResponse(c.br, r)
		if err != nil {
			p.release(b, c, false)
			return nil, nil, &rtError{stage: stageResponse, err: err}
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue // interim answers (100 Continue, 103 Early Hints) are not passed on
		}
		return resp, c, nil
	}
}

// isClientBodyErr tells a failure to read the client's body (its fault)
// from a failure to write to the backend.
func isClientBodyErr(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe) || errors.Is(err, io.ErrUnexpectedEOF)
}

// release returns c to the pool after a clean exchange, else closes it.
func (p *Proxy) release(b *backend, c *bconn, clean bool) {
	if c.stop != nil && !c.stop() {
		clean = false // the client left and the connection was closed
	}
	c.stop = nil
	if clean {
		b.pool.put(c)
	} else {
		b.pool.drop(c)
	}
}

// finish discards a response that is not passed on.
func (p *Proxy) finish(b *backend, c *bconn, resp *http.Response, _ bool) {
	_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	clean := err == nil && !resp.Close
	if clean {
		var one [1]byte
		if n, _ := resp.Body.Read(one[:]); n > 0 {
			clean = false
		}
	}
	resp.Body.Close()
	p.release(b, c, clean)
}

// respond passes the backend's response on to the client.
func (p *Proxy) respond(st *reqState, b *backend, c *bconn, r *http.Request, resp *http.Response, sent time.Time) {
	w := st.w
	h := w.Header()
	drop := connectionTokens(resp.Header["Connection"])
	for k, vv := range resp.Header {
		if isHop(k) || drop[k] {
			continue
		}
		if prior := h[k]; len(prior) > 0 {
			h[k] = append(prior, vv...) // a header the proxy set (Set-Cookie)
		} else {
			h[k] = vv // the response is ours: no copy
		}
	}
	w.WriteHeader(resp.StatusCode)
	st.wrote, st.code = true, resp.StatusCode
	p.metrics.request(b.name, resp.StatusCode)
	if r.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		resp.Body.Close()
		p.release(b, c, !resp.Close)
		return
	}
	bufp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bufp)
	buf := *bufp
	var rc *http.ResponseController
	if resp.ContentLength < 0 {
		rc = http.NewResponseController(w) // a streamed answer goes out as it comes
	}
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				resp.Body.Close()
				p.release(b, c, false) // the client left mid-answer
				return
			}
			if rc != nil {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The backend died mid-answer: cut the client's connection so
			// it cannot mistake a truncated body for a whole one.
			p.metrics.fail("mid_response")
			resp.Body.Close()
			p.release(b, c, false)
			p.suspect(b, sent)
			panic(http.ErrAbortHandler)
		}
	}
	resp.Body.Close()
	p.release(b, c, !resp.Close)
}
