package folders

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBuffersComeFromOnePool: shipping many large files at once (four at a
// time per receiver, each read ahead while a chunk is on the wire) uses at
// most poolBuffers chunk buffers for the whole Service. Before, each file's
// upload made three of its own: up to 96 MiB per folder and receiver.
func TestBuffersComeFromOnePool(t *testing.T) {
	t.Parallel()
	const files, size = 16, 1 << 20
	p := newPairPrepared(t, Folder{Name: "rec", Quiet: 50 * time.Millisecond}, time.Minute, func(a, _ string) {
		if err := os.MkdirAll(a, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range files {
			if err := os.WriteFile(filepath.Join(a, fmt.Sprintf("big%02d", i)), bytes.Repeat([]byte{byte(i)}, size), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}, func(o *Options) { o.ChunkSize = 64 << 10 }) // 16 chunks a file
	waitFor(t, "every file on n2", 60*time.Second, func() bool {
		for i := range files {
			n := fmt.Sprintf("big%02d", i)
			if !sameContent(filepath.Join(p.dirA, n), filepath.Join(p.dirB, n)) {
				return false
			}
		}
		return true
	})
	made, most := p.a.bufs.made.Load(), p.a.bufs.most.Load()
	t.Logf("%d buffers made, at most %d lent at once", made, most)
	if made > poolBuffers || most > poolBuffers {
		t.Errorf("%d chunk buffers made, %d lent at once; want at most %d, shared", made, most, poolBuffers)
	}
	if most < 2 {
		t.Errorf("at most %d buffer lent at once: no read-ahead, no parallel files", most)
	}
	if out := p.a.bufs.out.Load(); out != 0 {
		t.Errorf("%d buffers not given back", out)
	}
}
