// Package ports picks free TCP ports on loopback for throwaway clusters
// (the drill's sandbox, the end-to-end tests), outside the kernel's
// ephemeral range.
//
// A port found by listening on :0 and closing the listener goes back to the
// pool the kernel draws from for every other :0 listener and outgoing
// connection, so between the pick and its use another test running in
// parallel could take it. Ports below the ephemeral range are never handed
// out by the kernel on its own; a process-wide set keeps this process from
// picking one twice, and a lock on the port's byte of a file shared by
// every process on the machine (released by the kernel when the process
// exits) keeps two processes — test binaries that go test runs in
// parallel, a `haven drill --sandbox` — from picking the same one between
// one's pick and its use.
package ports

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var (
	mu   sync.Mutex
	used = map[int]bool{}
	// claims is the shared lock file, opened at the first pick and never
	// closed (closing any descriptor of it would drop every claim).
	claims     *os.File
	claimsOpen bool
)

// claimFile is where processes claim ports, one byte a port.
func claimFile() string { return filepath.Join(os.TempDir(), "haven-ports.lock") }

// claim takes port p for the rest of this process's life, or reports that
// another running process has it. Without the lock file (a read-only
// temporary directory) every port counts as claimed by no one.
func claim(p int) bool {
	if !claimsOpen {
		claimsOpen = true
		// Without O_CREAT first: the kernel's protected_regular refuses
		// O_CREAT on another user's file in a sticky directory like /tmp.
		f, err := os.OpenFile(claimFile(), os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			f, err = os.OpenFile(claimFile(), os.O_RDWR|os.O_CREATE, 0o666)
		}
		if err == nil {
			_ = f.Chmod(0o666) // past the umask: every user's processes share it
			claims = f
		}
	}
	if claims == nil {
		return true
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: int64(p), Len: 1}
	return syscall.FcntlFlock(claims.Fd(), syscall.F_SETLK, &lk) == nil
}

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
// process has not handed out before, that no other running process has
// claimed through this package, and that the kernel will not give to a :0
// listener or an outgoing connection.
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
		if !claim(p) {
			used[p] = true // another process's: not ours to hand out
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			used[p] = true // in use by a process that did not claim it
			continue
		}
		ln.Close()
		used[p] = true
		out = append(out, p)
	}
	return out, nil
}

// Addr is one port from Free as an address on 127.0.0.1 (host:port).
func Addr() (string, error) {
	p, err := Free(1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p[0]), nil
}
