package folders

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// pair is two Services in one process: n1 active, n2 receiving over a
// real HTTP server with the API's handler.
type pair struct {
	a, b       *Service
	dirA, dirB string
	events     chan ha.Event
	leader     atomic.Pointer[ha.Leader]
	down       atomic.Bool  // n2 answers 503 to everything, as if it were down
	corrupt    atomic.Int32 // corrupt this many chunks on the way to n2
	puts       sync.Map     // the PUTs n2 got, by endpoint ("file", "files", "chunk"): *atomic.Int32
	// hold: a PUT of this path (a file or chunk of it) waits at n2 until
	// release is closed; held is closed when the first one arrives.
	hold          atomic.Pointer[string]
	held, release chan struct{}
	heldOnce      sync.Once
	sources       atomic.Int32 // lists of complete files n2 was sent (taken or not)
	// holdSources: while set, a list of complete files sent to n2 waits
	// at n2 until the channel is closed (or its sender gives up); each
	// one held is counted in sourcesHeld.
	holdSources atomic.Pointer[chan struct{}]
	sourcesHeld atomic.Int32
}

// pairToken is the API token of a pair's agents.
const pairToken = "0123456789abcdef0123"

func newPair(t *testing.T, f Folder, maxLag time.Duration) *pair {
	t.Helper()
	return newPairPrepared(t, f, maxLag, nil)
}

// newPairPrepared is newPair with prepare(dirA, dirB) called before the
// services start.
func newPairPrepared(t *testing.T, f Folder, maxLag time.Duration, prepare func(dirA, dirB string), opts ...func(*Options)) *pair {
	t.Helper()
	p := &pair{dirA: filepath.Join(t.TempDir(), "a"), dirB: filepath.Join(t.TempDir(), "b"), events: make(chan ha.Event, 100), held: make(chan struct{}), release: make(chan struct{})}
	if prepare != nil {
		prepare(p.dirA, p.dirB)
	}
	p.leader.Store(&ha.Leader{Node: "n1", Epoch: 7})
	var srvB *httptest.Server
	mk := func(node, dir string, peers []Peer) *Service {
		fo := f
		fo.Path = dir
		o := Options{
			Node: node, Folders: []Folder{fo}, Peers: peers, MaxLag: maxLag,
			Client: api.NewClient(api.ClientOptions{Token: pairToken, Timeout: 5 * time.Second}),
			Clock:  clock.Real{}, Rescan: time.Second,
			Role: func() (bool, ha.Epoch) {
				l := p.leader.Load()
				return l.Node == node, l.Epoch
			},
			Leader: func() ha.Leader { return *p.leader.Load() },
			Event:  func(ev ha.Event) { p.events <- ev },
		}
		for _, f := range opts {
			f(&o)
		}
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	p.b = mk("n2", p.dirB, nil)
	h := api.FoldersHandler(p.b, []string{"n1", "n2"}, api.Options{Token: pairToken})
	srvB = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPut {
			n, _ := p.puts.LoadOrStore(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:], new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}
		if strings.HasSuffix(r.URL.Path, "/source") {
			p.sources.Add(1)
			if c := p.holdSources.Load(); c != nil {
				p.sourcesHeld.Add(1)
				select {
				case <-*c:
				case <-r.Context().Done():
					return
				}
			}
		}
		if h := p.hold.Load(); h != nil && r.Method == http.MethodPut && r.URL.Query().Get("path") == *h {
			p.heldOnce.Do(func() { close(p.held) })
			select {
			case <-p.release:
			case <-r.Context().Done():
				return
			}
		}
		if r.Method == http.MethodPut && p.corrupt.Add(-1) >= 0 {
			body, _ := io.ReadAll(r.Body)
			if len(body) > 0 {
				body[len(body)/2] ^= 0xff
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srvB.Close)
	p.a = mk("n1", p.dirA, []Peer{{Name: "n2", Addr: strings.TrimPrefix(srvB.URL, "http://")}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range []*Service{p.a, p.b} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return p
}

func waitFor(t testing.TB, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func sameContent(a, b string) bool {
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func TestServiceShipsDeletesAndReportsLost(t *testing.T) {
	t.Parallel()
	p := newPair(t, Folder{Name: "rec", Quiet: 100 * time.Millisecond, Mirror: true, Exclude: []string{"*.tmp"}}, 5*time.Second)
	if err := os.MkdirAll(filepath.Join(p.dirA, "sub/deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"a.txt":             []byte("alpha"),
		"sub/b.bin":         bytes.Repeat([]byte{1, 2, 3}, 3<<20), // 9 MiB: several chunks
		"sub/deeper/c.txt":  {},
		"sub/deeper/ignore": []byte("x"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(p.dirA, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(p.dirA, "scratch.tmp"), []byte("no"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		waitFor(t, name+" on n2", 20*time.Second, func() bool { return sameContent(filepath.Join(p.dirA, name), filepath.Join(p.dirB, name)) })
	}
	if _, err := os.Stat(filepath.Join(p.dirB, "scratch.tmp")); !os.IsNotExist(err) {
		t.Errorf("an excluded file was shipped: %v", err)
	}
	// A change, a rename and a delete (mirror).
	if err := os.WriteFile(filepath.Join(p.dirA, "a.txt"), []byte("alpha, changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(p.dirA, "sub/deeper/ignore"), filepath.Join(p.dirA, "moved")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the change, the rename and the delete on n2", 20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(p.dirB, "sub/deeper/ignore"))
		return sameContent(filepath.Join(p.dirA, "a.txt"), filepath.Join(p.dirB, "a.txt")) &&
			sameContent(filepath.Join(p.dirA, "moved"), filepath.Join(p.dirB, "moved")) && os.IsNotExist(err)
	})
	waitFor(t, "n2 caught up in the stats", 10*time.Second, func() bool {
		st := p.a.Stats()
		return len(st) == 1 && st[0].Peer == "n2" && st[0].Files == 0
	})
	// The source list reaches n2; then n1 writes a file and dies before
	// it is quiet... and n2 is promoted: it names what it lacks.
	waitFor(t, "the source list on n2", 10*time.Second, func() bool {
		s := p.b.recv["rec"].lastSource()
		if s == nil || len(s.Entries) != 4 {
			return false
		}
		for _, e := range s.Entries {
			if e.Path == "a.txt" && e.Size != 14 {
				return false
			}
		}
		return true
	})
	p.leader.Store(&ha.Leader{Node: "", Epoch: 7})
	waitFor(t, "n1 to stop sending", 10*time.Second, func() bool { return len(p.a.Stats()) == 0 })
	if err := os.Remove(filepath.Join(p.dirB, "moved")); err != nil {
		t.Fatal(err)
	}
	p.leader.Store(&ha.Leader{Node: "n2", Epoch: 9})
	select {
	case ev := <-drainTo(p.events, func(ev ha.Event) bool { return ev.To == "n2" && ev.Epoch == 9 }):
		if !strings.Contains(ev.Reason, "1 of 4") || !strings.Contains(ev.Reason, "moved (missing)") {
			t.Errorf("promotion event %q; want it to name moved as lost", ev.Reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event for the promotion")
	}
	if lost := p.b.Lost("rec"); len(lost) != 1 || lost[0].Path != "moved" {
		t.Errorf("Lost = %+v", lost)
	}
	if v := testutil.ToFloat64(p.b.m.lost.WithLabelValues("rec")); v != 1 {
		t.Errorf("haven_folder_lost_files = %v, want 1", v)
	}
}

func drainTo(c chan ha.Event, match func(ha.Event) bool) <-chan ha.Event {
	out := make(chan ha.Event, 1)
	go func() {
		for ev := range c {
			if match(ev) {
				out <- ev
				return
			}
		}
	}()
	return out
}

func TestServiceRefusesWritesFromANonActive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := New(Options{Node: "n2", Folders: []Folder{{Name: "rec", Path: dir}},
		Role:   func() (bool, ha.Epoch) { return false, 0 },
		Leader: func() ha.Leader { return ha.Leader{Node: "n1", Epoch: 5} }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, w := range []api.FolderWrite{{From: "n3", Epoch: 5}, {From: "n1", Epoch: 4}, {From: "n1", Epoch: 6}, {From: "", Epoch: 0}} {
		w.File = Entry{Path: "x", Size: 1}
		if _, err := s.FolderBegin(context.Background(), "rec", w); ha.KindOf(err) != ha.KindConflict {
			t.Errorf("write from %s@%d: %v, want Conflict", w.From, w.Epoch, err)
		}
	}
	if _, err := s.FolderBegin(context.Background(), "nope", api.FolderWrite{From: "n1", Epoch: 5, File: Entry{Path: "x"}}); ha.KindOf(err) != ha.KindNotFound {
		t.Errorf("unknown folder: %v", err)
	}
}

// TestServiceCatchesUpWithoutResending: a standby that was down gets what
// changed meanwhile, not everything again; a chunk corrupted on the way is
// refused and sent again.
func TestServiceCatchesUpWithoutResending(t *testing.T) {
	t.Parallel()
	p := newPair(t, Folder{Name: "rec", Quiet: 50 * time.Millisecond}, 5*time.Second)
	write := func(name string, size int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(p.dirA, name), bytes.Repeat([]byte(name[:1]), size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.corrupt.Store(1)
	for i := range 10 {
		write(fmt.Sprintf("a%d", i), 1000+i)
	}
	all := func(names ...string) func() bool {
		return func() bool {
			for _, n := range names {
				if !sameContent(filepath.Join(p.dirA, n), filepath.Join(p.dirB, n)) {
					return false
				}
			}
			return true
		}
	}
	first := []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"}
	waitFor(t, "the first files on n2", 20*time.Second, all(first...))
	if p.corrupt.Load() >= 0 {
		t.Fatal("no chunk was corrupted: the test proved nothing")
	}
	// On a link without TLS every chunk keeps its CRC-32C: the receiver
	// does not offer to go without.
	if m, err := p.a.o.Client.FolderManifest(context.Background(), p.a.o.Peers[0].Addr, "rec"); err != nil || m.ChunkSumOptional {
		t.Errorf("manifest over plain HTTP: ChunkSumOptional %v, %v; want false", m.ChunkSumOptional, err)
	}
	shipped := func() float64 { return testutil.ToFloat64(p.a.m.sentFiles.WithLabelValues("rec", "n2")) }
	waitFor(t, "10 files counted as shipped", 10*time.Second, func() bool { return shipped() == 10 })
	p.down.Store(true)
	write("b0", 5000)
	write("b1", 5000)
	waitFor(t, "n2 to be seen behind with an error", 20*time.Second, func() bool {
		st := p.a.Stats()
		return len(st) == 1 && st[0].Files == 2 && st[0].Error != ""
	})
	p.down.Store(false)
	waitFor(t, "the new files on n2", 20*time.Second, all("b0", "b1"))
	waitFor(t, "12 files counted as shipped", 10*time.Second, func() bool { return shipped() >= 12 })
	if n := shipped(); n != 12 {
		t.Errorf("%v files shipped in all, want 12: the unchanged ones went again", n)
	}
}

// putsTo is how many PUTs to endpoint ("file", "files", "chunk") n2 got.
func (p *pair) putsTo(endpoint string) int32 {
	n, ok := p.puts.Load(endpoint)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

// TestServiceShipsSmallFilesInBatches: small files go many to a request
// (PUT files), each byte for byte, their directories fsynced once per
// batch instead of once per file; a file corrupted on the way (a link
// without TLS: each carries its CRC-32C) is refused alone and sent again;
// a big file still goes in chunks beside them.
func TestServiceShipsSmallFilesInBatches(t *testing.T) {
	t.Parallel()
	var (
		syncs   atomic.Int32
		started atomic.Bool
	)
	p := newPairPrepared(t, Folder{Name: "rec", Quiet: 50 * time.Millisecond}, 5*time.Second, func(dirA, _ string) {
		for i := range 300 {
			d := filepath.Join(dirA, fmt.Sprintf("d%d", i%3))
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			data := bytes.Repeat([]byte{byte(i)}, 100+i*10)
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i)), data, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dirA, "big"), bytes.Repeat([]byte("b"), 3*smallFile), 0o644); err != nil {
			t.Fatal(err)
		}
	}, func(o *Options) {
		o.ChunkSize = smallFile // "big" goes in three chunks
		role := o.Role
		o.Role = func() (bool, ha.Epoch) { // n1 active once the counter is in place
			a, e := role()
			return a && started.Load(), e
		}
	})
	p.b.recv["rec"].dirSynced = func(string) { syncs.Add(1) }
	started.Store(true)
	p.corrupt.Store(1)
	all := func() bool {
		for i := range 300 {
			rel := filepath.Join(fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%03d", i))
			if !sameContent(filepath.Join(p.dirA, rel), filepath.Join(p.dirB, rel)) {
				return false
			}
		}
		return sameContent(filepath.Join(p.dirA, "big"), filepath.Join(p.dirB, "big"))
	}
	waitFor(t, "301 files on n2", 30*time.Second, all)
	if p.corrupt.Load() >= 0 {
		t.Fatal("nothing was corrupted: the test proved nothing")
	}
	fi, err := os.Stat(filepath.Join(p.dirB, "d1", "f001"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode on n2: %v, %v; want -rw-r-----", fi.Mode(), err)
	}
	batches, singles := p.putsTo("files"), p.putsTo("file")
	// 300 files of 100 to 3,090 bytes: at least 5 batches of 64.
	if batches < 5 || batches > 20 || singles > 3 {
		t.Errorf("%d batches and %d single files for 300 small files; want 5 to 20 batches (64 files each at most) and a single file or so (the one corrupted, again)", batches, singles)
	}
	if p.putsTo("chunk") < 3 {
		t.Errorf("%d chunks: want the big file's three", p.putsTo("chunk"))
	}
	// A directory fsync per batch and directory (3 each), and the big
	// file's, not one per file.
	if n := syncs.Load(); n > 3*batches+3*singles+5 {
		t.Errorf("%d directory fsyncs for %d batches of files in 3 directories; want one per batch and directory", n, batches)
	}
	shipped := testutil.ToFloat64(p.a.m.sentFiles.WithLabelValues("rec", "n2"))
	waitFor(t, "301 files counted as shipped", 10*time.Second, func() bool {
		shipped = testutil.ToFloat64(p.a.m.sentFiles.WithLabelValues("rec", "n2"))
		return shipped >= 301
	})
	if shipped != 301 {
		t.Errorf("%v files counted as shipped, want 301", shipped)
	}
}

// holdUpload writes a file of size bytes at name into n1's folder and
// waits until its upload is held at n2; the returned release lets it go on
// (and runs at the test's end if the test did not call it).
func (p *pair) holdUpload(t *testing.T, name string, size int) (release func()) {
	t.Helper()
	p.hold.Store(&name)
	var once sync.Once
	release = func() { once.Do(func() { close(p.release) }) }
	t.Cleanup(release)
	if err := os.WriteFile(filepath.Join(p.dirA, name), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.held:
	case <-time.After(20 * time.Second):
		t.Fatalf("the upload of %s never reached n2", name)
	}
	return release
}
