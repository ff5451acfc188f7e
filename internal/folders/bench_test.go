package folders

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSyncThroughput ships a folder that already exists (an initial
// sync, or a standby catching up) to a receiver over mutual TLS on
// loopback and reports MB/s. HAVEN_SYNC_DATA names the folder (bench/sync.sh
// makes one and runs rsync on the same data); without it a small one is made.
// HAVEN_SYNC_CHUNK sets the chunk size in bytes (default 8 MiB).
// HAVEN_SYNC_INSECURE=1 ships over plain HTTP with the API token instead,
// as a cluster whose config says `insecure: true` does (each chunk with
// its CRC-32C): the side to compare with an rsync daemon on plain TCP.
func BenchmarkSyncThroughput(b *testing.B) {
	src := os.Getenv("HAVEN_SYNC_DATA")
	if src == "" {
		src = b.TempDir()
		for i := range 20 {
			if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), make([]byte, 1<<20), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	var files int
	var total int64
	_ = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !isState(src, p) {
			fi, _ := d.Info()
			files++
			total += fi.Size()
		}
		return nil
	})
	var bw int64
	if s := os.Getenv("HAVEN_SYNC_BANDWIDTH"); s != "" {
		bw, _ = strconv.ParseInt(s, 10, 64)
	}
	insecure := os.Getenv("HAVEN_SYNC_INSECURE") == "1"
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dst := filepath.Join(b.TempDir(), "dst")
		mkPair, link := newTLSPair, "mutual TLS"
		if insecure {
			mkPair, link = newInsecurePair, "insecure: plain HTTP, token, CRC-32C per chunk"
		}
		p := mkPair(b, src, dst, 0, bw)
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		p.start()
		waitFor(b, "the receiver to hold the folder", 10*time.Minute, func() bool {
			st := p.a.Stats()
			return len(st) == 1 && st[0].Files == 0 && st[0].Error == "" && p.b.shippedSeen(dst, files)
		})
		el, cpu := time.Since(start), cpuTime()-cpu0
		b.ReportMetric(float64(total)/1e6/el.Seconds(), "MB/s")
		b.ReportMetric(el.Seconds(), "s/sync")
		b.ReportMetric(cpu.Seconds(), "cpu-s/sync")
		if !insecure && p.withSum.Load() > 0 {
			b.Fatalf("%s: %d writes with a CRC-32C header", link, p.withSum.Load())
		}
		b.Logf("haven (%s; %d writes with a CRC-32C header, %d without): %d files, %d bytes in %s: %.1f MB/s, %.2f CPU s (sender and receiver)", link, p.withSum.Load(), p.withoutSum.Load(), files, total, el.Round(time.Millisecond), float64(total)/1e6/el.Seconds(), cpu.Seconds())
	}
}

// benchChunk is the chunk size the benchmarks' pair uses: HAVEN_SYNC_CHUNK
// bytes, or the default (0).
func benchChunk() int {
	n, _ := strconv.Atoi(os.Getenv("HAVEN_SYNC_CHUNK"))
	return max(n, 0)
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func isState(root, p string) bool {
	rel, _ := filepath.Rel(root, p)
	return rel == stateDir || len(rel) > len(stateDir) && rel[:len(stateDir)+1] == stateDir+"/"
}

// shippedSeen reports whether dst holds n files (outside haven's own, and
// no partial file).
func (s *Service) shippedSeen(dst string, n int) bool {
	got := 0
	_ = filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !isState(dst, p) && !isPartial(d.Name()) {
			got++
		}
		return nil
	})
	return got == n
}

// BenchmarkSyncLatency writes files of one size into the active's folder,
// one after the other, and reports the time from each file's close until
// it is on the receiver (p50, p99), with the default quiet time (500 ms)
// or HAVEN_SYNC_QUIET. HAVEN_SYNC_SIZES lists sizes in bytes (default
// 1 KiB, 1 MiB, 10 MiB); HAVEN_SYNC_COUNT files of each (default 20).
func BenchmarkSyncLatency(b *testing.B) {
	quiet := 500 * time.Millisecond
	if s := os.Getenv("HAVEN_SYNC_QUIET"); s != "" {
		quiet, _ = time.ParseDuration(s)
	}
	sizes := []int{1 << 10, 1 << 20, 10 << 20}
	if s := os.Getenv("HAVEN_SYNC_SIZES"); s != "" {
		sizes = nil
		for _, f := range filepath.SplitList(s) {
			n, _ := strconv.Atoi(f)
			sizes = append(sizes, n)
		}
	}
	count := 20
	if s := os.Getenv("HAVEN_SYNC_COUNT"); s != "" {
		count, _ = strconv.Atoi(s)
	}
	for range b.N {
		src, dst := b.TempDir(), filepath.Join(b.TempDir(), "dst")
		newTLSPair(b, src, dst, quiet, 0).start()
		for _, size := range sizes {
			var lat []time.Duration
			data := make([]byte, size)
			for i := range count {
				name := fmt.Sprintf("s%d-%03d", size, i)
				data[0] = byte(i)
				if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
					b.Fatal(err)
				}
				closed := time.Now()
				waitFor(b, name+" on the receiver", time.Minute, func() bool {
					fi, err := os.Stat(filepath.Join(dst, name))
					return err == nil && fi.Size() == int64(size)
				})
				lat = append(lat, time.Since(closed))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
			b.Logf("haven: %d-byte files, quiet %s: close -> on the standby p50 %s p99 %s (n=%d)", size, quiet, p50.Round(time.Millisecond), p99.Round(time.Millisecond), len(lat))
			b.ReportMetric(p99.Seconds(), fmt.Sprintf("p99-s/%dB", size))
		}
	}
}
