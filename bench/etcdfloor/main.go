// Command etcdfloor writes keys straight to an etcd cluster the way the
// session store's group commit does (transactions of -b puts, -c of them in
// flight, each behind a compare), to measure what etcd alone costs per key
// on the machine: the floor under haven's SET. bench/sessions.sh runs it
// against the cluster's own members, under a prefix nobody watches.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	eps := flag.String("endpoints", "127.0.0.1:2379", "etcd client host:port, comma-separated")
	total := flag.Int("n", 30000, "keys to write in all")
	batch := flag.Int("b", 38, "puts per transaction")
	inflight := flag.Int("c", 1, "transactions in flight")
	size := flag.Int("d", 3, "value size in bytes")
	keys := flag.Int("r", 100000, "distinct keys")
	prefix := flag.String("prefix", "/haven-floor/", "key prefix")
	pack := flag.Bool("pack", false, "one put per transaction holding the whole batch (a log-structured layout: one etcd entry per batch instead of one per key)")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*eps, ","), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdfloor:", err)
		os.Exit(1)
	}
	defer cli.Close()
	val := strings.Repeat("x", 9+*size)
	fence := *prefix + "fence"
	if _, err := cli.Put(context.Background(), fence, "n1"); err != nil {
		fmt.Fprintln(os.Stderr, "etcdfloor:", err)
		os.Exit(1)
	}
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for c := 0; c < *inflight; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := next.Add(int64(*batch)) - int64(*batch)
				if lo >= int64(*total) {
					return
				}
				ops := make([]clientv3.Op, 0, *batch)
				var packed strings.Builder
				for i := lo; i < min(lo+int64(*batch), int64(*total)); i++ {
					k := fmt.Sprintf("%skey:%012d", *prefix, i%int64(*keys))
					if *pack {
						packed.WriteString(k)
						packed.WriteString(val)
						continue
					}
					ops = append(ops, clientv3.OpPut(k, val))
				}
				if *pack {
					ops = append(ops, clientv3.OpPut(fmt.Sprintf("%slog:%012d", *prefix, lo), packed.String()))
				}
				t := time.Now()
				_, err := cli.Txn(context.Background()).If(clientv3.Compare(clientv3.Value(fence), "=", "n1")).Then(ops...).Commit()
				if err != nil {
					failed.Store(err)
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(t))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := failed.Load().(error); ok {
		fmt.Fprintln(os.Stderr, "etcdfloor:", err)
		os.Exit(1)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	// keys/s, commit p50 ms, commit p99 ms
	fmt.Printf("%.0f %.3f %.3f\n", float64(*total)/elapsed.Seconds(), pct(0.5), pct(0.99))
}
