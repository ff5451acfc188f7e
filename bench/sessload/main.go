// Command sessload measures SET/GET throughput and latency against a
// Redis-protocol server, optionally following every SET with WAIT 1 0 (a
// Redis primary that confirms each write on its replica: the synchronous
// replication haven's session store is compared with). bench/sessions.sh
// runs it; redis-benchmark cannot send two commands per request.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "server host:port")
	pass := flag.String("a", "", "password (AUTH)")
	clients := flag.Int("c", 50, "connections")
	total := flag.Int("n", 100000, "requests in all")
	pipe := flag.Int("P", 1, "requests per round trip")
	op := flag.String("t", "set", "set or get")
	wait := flag.Bool("wait", false, "send WAIT 1 0 after every SET (one request = SET + WAIT)")
	size := flag.Int("d", 3, "value size in bytes")
	keys := flag.Int("r", 100000, "distinct keys")
	flag.Parse()
	val := strings.Repeat("x", *size)
	var next atomic.Int64
	lat := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			if err := run(*addr, *pass, *op, val, *keys, *pipe, *wait, *total, &next, &lat[c]); err != nil {
				failed.Store(err)
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := failed.Load().(error); ok {
		fmt.Fprintln(os.Stderr, "sessload:", err)
		os.Exit(1)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	fmt.Printf("%.0f %.3f %.3f\n", float64(len(all))/elapsed.Seconds(), pct(0.5), pct(0.99))
}

func run(addr, pass, op, val string, keys, pipe int, wait bool, total int, next *atomic.Int64, lat *[]time.Duration) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	br, bw := bufio.NewReader(nc), bufio.NewWriter(nc)
	send := func(args ...string) {
		fmt.Fprintf(bw, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(bw, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	if pass != "" {
		send("AUTH", pass)
		bw.Flush()
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
			return fmt.Errorf("AUTH: %q %v", l, err)
		}
	}
	for {
		first := next.Add(int64(pipe)) - int64(pipe)
		if first >= int64(total) {
			return nil
		}
		n := min(pipe, total-int(first))
		t0 := time.Now()
		replies := 0
		for i := 0; i < n; i++ {
			key := fmt.Sprintf("key:%012d", (first+int64(i))%int64(keys))
			if op == "get" {
				send("GET", key)
				replies++
				continue
			}
			send("SET", key, val)
			replies++
			if wait {
				send("WAIT", "1", "0")
				replies++
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		for i := 0; i < replies; i++ {
			if err := skipReply(br); err != nil {
				return err
			}
		}
		d := time.Since(t0)
		for i := 0; i < n; i++ {
			*lat = append(*lat, d)
		}
	}
}

func skipReply(br *bufio.Reader) error {
	l, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	switch l[0] {
	case '-':
		return fmt.Errorf("server error: %s", strings.TrimSpace(l))
	case '$':
		var n int
		fmt.Sscanf(l[1:], "%d", &n)
		if n >= 0 {
			if _, err := br.Discard(n + 2); err != nil {
				return err
			}
		}
	}
	return nil
}
