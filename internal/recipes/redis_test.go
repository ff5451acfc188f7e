package recipes

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// redisLoad writes through the proxy without pause: keys w:N with SET then
// WAIT 1 (acknowledged once a replica has it), and keys p:N with a plain
// SET, alternating. Bounded by stop() and maxRedisWrites.
type redisLoad struct {
	addr string

	tally              // acknowledged writes, failed commands
	waitAcked []string // keys whose WAIT 1 answered 1
	plain     []string // keys whose SET answered OK

	stopC chan struct{}
	once  sync.Once
	done  chan struct{}
}

const maxRedisWrites = 2_000_000

func startRedisLoad(addr string) *redisLoad {
	l := &redisLoad{addr: addr, stopC: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *redisLoad) run() {
	defer close(l.done)
	var c *respConn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for i := range maxRedisWrites {
		select {
		case <-l.stopC:
			return
		default:
		}
		if c == nil {
			var err error
			if c, err = dialRESP(l.addr); err != nil {
				l.fail(err.Error())
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		key := "p:" + strconv.Itoa(i)
		if i%2 == 0 {
			key = "w:" + strconv.Itoa(i)
		}
		rep, err := c.do("SET", key, strconv.Itoa(i))
		if err != nil || rep != "OK" {
			l.fail(fmt.Sprintf("SET: %v %v", rep, err))
			c.Close()
			c = nil
			continue
		}
		if i%2 != 0 {
			l.mu.Lock()
			l.plain = append(l.plain, key)
			l.okAt = append(l.okAt, time.Now())
			l.mu.Unlock()
			continue
		}
		rep, err = c.do("WAIT", "1", "200")
		if err != nil {
			l.fail("WAIT: " + err.Error())
			c.Close()
			c = nil
			continue
		}
		if n, ok := rep.(int64); ok && n >= 1 {
			l.mu.Lock()
			l.waitAcked = append(l.waitAcked, key)
			l.okAt = append(l.okAt, time.Now())
			l.mu.Unlock()
		}
	}
}

func (l *redisLoad) stop() {
	l.once.Do(func() { close(l.stopC) })
	<-l.done
}

func (l *redisLoad) acked() (wait, plain []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.waitAcked...), append([]string(nil), l.plain...)
}

// missing counts the keys that the Redis at addr does not have.
func missing(t *testing.T, addr string, keys []string) int {
	t.Helper()
	c, err := dialRESP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	for len(keys) > 0 {
		batch := keys[:min(500, len(keys))]
		keys = keys[len(batch):]
		rep, err := c.do(append([]string{"MGET"}, batch...)...)
		if err != nil {
			t.Fatalf("MGET: %v", err)
		}
		vals, ok := rep.([]any)
		if !ok {
			t.Fatalf("MGET answered %v", rep)
		}
		for _, v := range vals {
			if v == nil {
				n++
			}
		}
	}
	return n
}

// TestRedisRecipe runs examples/redis: two nodes with Debian's
// redis-server replicating under haven's hooks, a witness, and a client
// writing through haven's proxy (TCP mode) across kill -9 of the active's
// Redis, kill -9 of the active's agent and a switchover. Writes
// acknowledged by WAIT 1 must all survive; plain writes may lose what had
// not replicated yet, which the test measures.
func TestRedisRecipe(t *testing.T) {
	r := newRecipe(t, "redis")
	apis := []string{"127.0.0.1:7121", "127.0.0.1:7122"}
	redisAddr := map[string]string{"n1": r.addr("127.0.0.1:6381"), "n2": r.addr("127.0.0.1:6382")}
	r.startCluster(apis, startTimeout, "w1")
	proxyAddr := r.addr("127.0.0.1:6380")
	load := startRedisLoad(proxyAddr)
	defer load.stop()
	waitFor(t, 20*time.Second, "the client's first acknowledged writes", func() bool {
		w, _ := load.acked()
		return len(w) > 20
	})

	var results []result
	lostW, lostP := 0, 0
	// measure waits for the failover after the fault at t0, runs then
	// (a restart of what the fault killed), waits for both nodes to be
	// healthy again and records the fault.
	measure := func(fault, from string, t0 time.Time, then func()) {
		t.Helper()
		next := other(from)
		r.waitActive(apis, startTimeout, from, next)
		since := time.Now()
		waitFor(t, 30*time.Second, "a write acknowledged after "+fault, func() bool {
			_, ok := load.firstOK(since)
			if !ok && time.Since(since) > 20*time.Second {
				load.mu.Lock()
				t.Logf("no write acknowledged for 20 s; %d errors, the last: %s", len(load.errs), load.lastErr)
				load.mu.Unlock()
			}
			return ok
		})
		if then != nil {
			then()
		}
		r.waitActive(apis, startTimeout, "", "n1", "n2")
		end := time.Now()
		ok, errs := load.counts(t0, end)
		// Everything acknowledged so far must be on the new active.
		w, p := load.acked()
		mw, mp := missing(t, redisAddr[next], w), missing(t, redisAddr[next], p)
		gap, gapStart := load.outage(t0, end)
		t.Logf("%s at %s: no acknowledged write from %s to %s after the fault", fault, t0.Format("15:04:05.000"), gapStart.Sub(t0).Round(time.Millisecond), (gapStart.Sub(t0) + gap).Round(time.Millisecond))
		if gap > 3*time.Second && testing.Verbose() {
			t.Logf("proxy log:\n%s\nerrors: %s", r.proc("proxy").log.String(), load.lastErr)
		}
		results = append(results, result{fault: fault, from: from, to: next, failover: gap, requests: ok + errs, errors: errs,
			lost: fmt.Sprintf("WAIT 1: %d of %d; plain: %d of %d", mw-lostW, len(w), mp-lostP, len(p))})
		if mw > lostW {
			t.Errorf("%s: %d writes acknowledged by WAIT 1 are missing on the new active %s", fault, mw-lostW, next)
		}
		lostW, lostP = mw, mp
	}

	r.threeFaults(apis, "active", "Redis", redisAddr, nil, measure)

	load.stop()
	// An active whose Redis replicates takes no writes; check.sh fails it
	// (and the node steps down), which must not have been needed: each
	// promotion's REPLICAOF NO ONE must have held (TestRedisFollowerYieldsToPromotion).
	for _, n := range []string{"n1", "n2"} {
		for _, line := range strings.Split(r.proc(n).log.String(), "\n") {
			if strings.Contains(line, "this Redis is a replica") {
				t.Errorf("%s was active with its Redis a replica: %s", n, line)
				break
			}
		}
	}
	report(t, "redis", results)
	if testing.Verbose() {
		_, events := runHaven(t, "events", "--config", r.config, "--limit", "60")
		t.Logf("haven events:\n%s", events)
	}
}
