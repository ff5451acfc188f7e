// Package ports picks free TCP ports on loopback for throwaway clusters
// (the drill's sandbox, the end-to-end tests), outside the kernel's
// ephemeral range.
//
// A port found by listening on :0 and closing the listener goes back to the
// pool the kernel draws from for every other :0 listener and outgoing
// connection, so between the pick and its use another test running in
// parallel could take it. Ports below the ephemeral range are never handed
// out by the kernel on its own; a process-wide set keeps this process from
// picking one twice.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

var (
	mu   sync.Mutex
	used = map[int]bool{}
)

// low and high bound the ports picked: from 10000 up to the start of the
// ephemeral range (32768 by default).
const low = 10000

func high() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > low+1000 {
				return n
			}
		}
	}
	return 32768
}

// Free returns n distinct ports on 127.0.0.1 that are free now, that this
// process has not handed out before, and that the kernel will not give to
// a :0 listener or an outgoing connection.
func Free(n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	hi := high()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n+1000 {
			return nil, fmt.Errorf("no %d free loopback ports between %d and %d", n, low, hi)
		}
		p := low + rand.IntN(hi-low)
		if used[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // taken, by another process's cluster
		}
		ln.Close()
		used[p] = true
		out = append(out, p)
	}
	return out, nil
}
