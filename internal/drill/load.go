package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-ha/haven/internal/sample"
)

// Op kinds.
const (
	OpGet   = "get"   // GET /: who is active, at which epoch (the role, not the store)
	OpWrite = "write" // POST /write of a key written once: read back at the end (RPO)
	OpRegW  = "regw"  // POST /write of a shared register (linearizability)
	OpRegR  = "regr"  // GET /read of a shared register
)

// Op is one client request and what came of it. Times are offsets from the
// start of the run, on this machine's monotonic clock; ServedAt and
// ServedTo are the serving node's own clock, which on one machine is the
// same clock.
type Op struct {
	Client   int           `json:"client"`
	Kind     string        `json:"kind"`
	Key      string        `json:"key,omitempty"`
	Value    string        `json:"value,omitempty"` // written, or read
	Found    bool          `json:"found,omitempty"`
	Start    time.Duration `json:"start"`
	End      time.Duration `json:"end"`
	OK       bool          `json:"ok"`
	Unknown  bool          `json:"unknown,omitempty"` // a write that may or may not have committed
	Code     int           `json:"code,omitempty"`
	Err      string        `json:"err,omitempty"`
	Node     string        `json:"node,omitempty"`
	Epoch    int64         `json:"epoch,omitempty"`
	ServedAt time.Duration `json:"served_at,omitempty"` // the node's agent confirmed the active role
	ServedTo time.Duration `json:"served_to,omitempty"` // between ServedAt and ServedTo
}

// Latency is how long the op took.
func (o Op) Latency() time.Duration { return o.End - o.Start }

// LoadOptions shape the client load.
type LoadOptions struct {
	Target    string        // base URL of the proxy, e.g. http://127.0.0.1:8080
	Clients   int           // request streams (default 4)
	Pause     time.Duration // between one stream's requests, open loop (default 40ms)
	Registers int           // shared registers (default 16)
	Prefix    string        // key prefix, unique per run
	Timeout   time.Duration // per request (default 10s)
	ReadOnly  bool          // only GET / (a real cluster's own service)
	Path      string        // with ReadOnly: the path to GET (default /)
}

// Load is client traffic through the proxy, every request recorded.
type Load struct {
	o    LoadOptions
	t0   time.Time
	seq  atomic.Int64
	mu   sync.Mutex
	ops  []Op
	stop chan struct{}
	wg   sync.WaitGroup
}

// StartLoad starts o.Clients clients; times are measured from t0.
func StartLoad(o LoadOptions, t0 time.Time) *Load {
	if o.Clients <= 0 {
		o.Clients = 4
	}
	if o.Pause <= 0 {
		o.Pause = 40 * time.Millisecond
	}
	if o.Registers <= 0 {
		o.Registers = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Path == "" {
		o.Path = "/"
	}
	l := &Load{o: o, t0: t0, stop: make(chan struct{})}
	for c := range o.Clients {
		l.wg.Add(1)
		go l.client(c)
	}
	return l
}

// Stop stops the clients and waits for their last requests.
func (l *Load) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// Ops returns a copy of every op recorded so far, in order of completion.
func (l *Load) Ops() []Op {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Op(nil), l.ops...)
}

func (l *Load) since(t time.Time) time.Duration { return t.Sub(l.t0) }

// client is one stream of requests, open loop: it sends one every Pause
// whether or not the earlier ones have answered, as independent users do,
// so that requests stuck on a failed node do not stop the others. Its
// register operations alone are closed loop, one at a time, as a
// linearizability history needs: hundreds of them in flight at once
// during an outage would leave the checker (porcupine) searching for
// minutes; a tick that finds the register lane busy sends a GET instead.
func (l *Load) client(id int) {
	defer l.wg.Done()
	hc := &http.Client{Timeout: l.o.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}}
	defer hc.CloseIdleConnections()
	rng := rand.New(rand.NewPCG(uint64(id)+1, uint64(time.Now().UnixNano())))
	inflight := make(chan struct{}, 256)
	regLane := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(l.o.Pause)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		var do func() Op
		p := rng.IntN(100)
		reg := p >= 60 && !l.o.ReadOnly
		if reg {
			select {
			case regLane <- struct{}{}:
			default:
				p, reg = 0, false // the register lane is busy: a GET instead
			}
		}
		switch {
		case l.o.ReadOnly || p < 40:
			do = func() Op { return l.get(hc, id) }
		case p < 60:
			n := l.seq.Add(1)
			key, val := fmt.Sprintf("%sw%d", l.o.Prefix, n), fmt.Sprintf("c%d-%d", id, n)
			do = func() Op { return l.write(hc, id, OpWrite, key, val) }
		case p < 80:
			n := l.seq.Add(1)
			key, val := fmt.Sprintf("%sr%d", l.o.Prefix, rng.IntN(l.o.Registers)), fmt.Sprintf("c%d-%d", id, n)
			do = func() Op { return l.write(hc, id, OpRegW, key, val) }
		default:
			key := fmt.Sprintf("%sr%d", l.o.Prefix, rng.IntN(l.o.Registers))
			do = func() Op { return l.read(hc, id, key) }
		}
		select {
		case inflight <- struct{}{}:
		default:
			if reg {
				<-regLane
			}
			continue // 256 requests of this client are stuck already
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := do()
			<-inflight
			if reg {
				<-regLane
			}
			l.mu.Lock()
			l.ops = append(l.ops, op)
			l.mu.Unlock()
		}()
	}
}

func (l *Load) do(hc *http.Client, op *Op, req *http.Request, into any) {
	op.Start = l.since(time.Now())
	resp, err := hc.Do(req)
	if err != nil {
		op.End = l.since(time.Now())
		op.Err = shortErr(err)
		return
	}
	defer resp.Body.Close()
	op.Code = resp.StatusCode
	derr := json.NewDecoder(resp.Body).Decode(into)
	op.End = l.since(time.Now())
	switch {
	case resp.StatusCode != http.StatusOK:
		op.Err = resp.Status
	case derr != nil:
		op.Err = "bad answer: " + derr.Error()
	default:
		op.OK = true
	}
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s, "http") {
		return s[i+2:]
	}
	return s
}

func (l *Load) get(hc *http.Client, id int) Op {
	op := Op{Client: id, Kind: OpGet}
	req, _ := http.NewRequest(http.MethodGet, l.o.Target+l.o.Path, nil)
	var r sample.Reply
	l.do(hc, &op, req, &r)
	if l.o.ReadOnly && op.Code == http.StatusOK {
		op.OK, op.Err = true, "" // any answer body will do
	}
	if op.OK {
		op.Node, op.Epoch = r.Node, int64(r.Epoch)
		if r.ServedAt > 0 {
			op.ServedAt, op.ServedTo = time.Unix(0, r.ServedAt).Sub(l.t0), time.Unix(0, r.ServedTo).Sub(l.t0)
		}
	}
	return op
}

func (l *Load) write(hc *http.Client, id int, kind, key, value string) Op {
	op := Op{Client: id, Kind: kind, Key: key, Value: value}
	q := url.Values{"k": {key}, "v": {value}}
	req, _ := http.NewRequest(http.MethodPost, l.o.Target+"/write?"+q.Encode(), nil)
	// The same id on every retry: the store applies the write once, so the
	// proxy may retry it as it retries a GET.
	req.Header.Set("Idempotency-Key", key+"="+value)
	var r sample.KVReply
	l.do(hc, &op, req, &r)
	if op.OK {
		op.Node, op.Epoch = r.Node, int64(r.Epoch)
		op.ServedAt, op.ServedTo = time.Unix(0, r.ServedAt).Sub(l.t0), time.Unix(0, r.ServedTo).Sub(l.t0)
	} else if r.Error != "" {
		op.Err += ": " + r.Node + ": " + r.Error
	}
	// 503: nothing was written (the node was not active, or the proxy had
	// no node to send it to). Anything else that is not 200 may have
	// committed.
	op.Unknown = !op.OK && op.Code != http.StatusServiceUnavailable
	return op
}

func (l *Load) read(hc *http.Client, id int, key string) Op {
	op := Op{Client: id, Kind: OpRegR, Key: key}
	req, _ := http.NewRequest(http.MethodGet, l.o.Target+"/read?k="+url.QueryEscape(key), nil)
	var r sample.KVReply
	l.do(hc, &op, req, &r)
	if op.OK {
		op.Node, op.Epoch, op.Value, op.Found = r.Node, int64(r.Epoch), r.Value, r.Found
		op.ServedAt, op.ServedTo = time.Unix(0, r.ServedAt).Sub(l.t0), time.Unix(0, r.ServedTo).Sub(l.t0)
	}
	return op
}

// ReadBack reads every acknowledged write among ops through target and
// returns the keys whose value is missing or different. It retries each
// read until it gets an answer or ctx ends.
func ReadBack(ctx context.Context, target string, ops []Op) (acked int, lost []string, err error) {
	var want []Op
	for _, o := range ops {
		if o.Kind == OpWrite && o.OK {
			want = append(want, o)
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Start < want[j].Start })
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	type res struct {
		key  string
		lost bool
		err  error
	}
	jobs := make(chan Op)
	out := make(chan res)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range jobs {
				var r sample.KVReply
				var e error
				for {
					if e = ctx.Err(); e != nil {
						break
					}
					resp, err := hc.Get(target + "/read?k=" + url.QueryEscape(o.Key))
					if err == nil {
						e = json.NewDecoder(resp.Body).Decode(&r)
						code := resp.StatusCode
						resp.Body.Close()
						if code == http.StatusOK && e == nil {
							break
						}
					}
					time.Sleep(50 * time.Millisecond)
				}
				out <- res{o.Key, e == nil && (!r.Found || r.Value != o.Value), e}
			}
		}()
	}
	go func() {
		for _, o := range want {
			jobs <- o
		}
		close(jobs)
		wg.Wait()
		close(out)
	}()
	for r := range out {
		if r.err != nil && err == nil {
			err = fmt.Errorf("read back %s: %w", r.key, r.err)
		}
		if r.lost {
			lost = append(lost, r.key)
		}
	}
	sort.Strings(lost)
	return len(want), lost, err
}
