package folders

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// TestAbandonedUploadsAreRemoved: a partial upload nobody continues (the
// active died or was demoted mid-file, or the file went) is removed after
// PartialTimeout, in a running receiver and at start; one in progress and
// a fresh leftover (to resume after a restart) stay. Before, they stayed
// for ever.
func TestAbandonedUploadsAreRemoved(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	clk := func() time.Time { return now }
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	r.now = clk
	data := []byte("0123456789abcdefghij")
	idle := Entry{Path: "idle.bin", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000}
	busy := Entry{Path: "busy.bin", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000}
	for _, e := range []Entry{idle, busy} {
		if _, err := r.begin(e); err != nil {
			t.Fatal(err)
		}
		if _, err := r.chunk(context.Background(), e, 0, ChunkSum(data[:5]), data[:5]); err != nil {
			t.Fatal(err)
		}
	}
	partials := func() []string {
		ents, _ := os.ReadDir(dir) // partial files are beside their destinations
		var names []string
		for _, d := range ents {
			if isPartial(d.Name()) {
				names = append(names, d.Name())
			}
		}
		return names
	}
	if n := len(partials()); n != 4 {
		t.Fatalf("%d partial files, want 4 (two uploads and their meta)", n)
	}
	now = now.Add(20 * time.Minute)
	if _, err := r.chunk(context.Background(), busy, 5, ChunkSum(data[5:10]), data[5:10]); err != nil {
		t.Fatal(err)
	}
	now = now.Add(15 * time.Minute) // idle: 35 min untouched; busy: 15
	if n := r.sweep(30*time.Minute, false); n != 1 {
		t.Errorf("sweep removed %d uploads, want 1 (the idle one)", n)
	}
	if got := partials(); len(got) != 2 || !slices.Contains(got, filepath.Base(partialName("busy.bin"))) {
		t.Errorf("the partial files are %v; want only busy.bin's upload and meta", got)
	}
	if _, err := r.chunk(context.Background(), idle, 5, ChunkSum(data[5:10]), data[5:10]); ha.KindOf(err) != ha.KindConflict {
		t.Errorf("a chunk of the removed upload: %v, want Conflict (begin again)", err)
	}
	if _, err := r.chunk(context.Background(), busy, 10, ChunkSum(data[10:]), data[10:]); err != nil {
		t.Errorf("the upload in progress: %v", err)
	}
	// A restart: the busy upload is a leftover now, as is a commit that
	// was claimed when the agent stopped; an old one elsewhere too.
	r.close()
	claimed := filepath.Join(dir, partialName("c.bin")+".commit")
	old := filepath.Join(dir, partialName("old.bin"))
	if err := os.WriteFile(claimed, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	leaveOld(t, old)
	restartStandby(t, dir)
	if got := partials(); len(got) != 2 || !slices.Contains(got, filepath.Base(partialName("busy.bin"))) {
		t.Errorf("after a restart the partial files are %v; want only busy.bin's (to resume)", got)
	}
}

// TestCommitSyncsNewDirectories: a file committed into directories that
// did not exist fsyncs the parent of each new one (and the file's own),
// so that after a power cut the file is not lost with a directory entry
// that never reached the disk. Before, only the file's directory was.
func TestCommitSyncsNewDirectories(t *testing.T) {
	dir := t.TempDir()
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	var synced []string
	r.dirSynced = func(d string) { synced = append(synced, d) }
	if _, err := put(t, r, "a/b/c.txt", []byte("hello"), 3); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{".", "a", "a/b"} {
		if !slices.Contains(synced, d) {
			t.Errorf("directory %q not fsynced; fsynced: %v", d, synced)
		}
	}
	synced = nil
	if _, err := put(t, r, "a/b/d.txt", []byte("again"), 3); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(synced, []string{"a/b"}) {
		t.Errorf("into existing directories: fsynced %v, want only a/b", synced)
	}
}

// TestDeletesAreForgottenOnceApplied: with delete: mirror the active
// remembers each deleted file only until every receiver is seen without
// it. Before, the set only grew (a folder whose recordings are rotated
// away kept every name ever deleted, in memory and in every plan).
func TestDeletesAreForgottenOnceApplied(t *testing.T) {
	t.Parallel()
	p := newPair(t, Folder{Name: "rec", Quiet: 50 * time.Millisecond, Mirror: true}, time.Minute)
	const n = 30
	name := func(i int) string { return filepath.Join("d", "f"+string(rune('a'+i%26))+string(rune('a'+i/26))) }
	if err := os.MkdirAll(filepath.Join(p.dirA, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(p.dirA, name(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the files on n2", 30*time.Second, func() bool {
		for i := range n {
			if !sameContent(filepath.Join(p.dirA, name(i)), filepath.Join(p.dirB, name(i))) {
				return false
			}
		}
		return true
	})
	for i := range n {
		if err := os.Remove(filepath.Join(p.dirA, name(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the deletes on n2", 30*time.Second, func() bool {
		ents, _ := os.ReadDir(filepath.Join(p.dirB, "d"))
		return len(ents) == 0
	})
	snd := p.a.sender("rec")
	remembered := func() int {
		snd.mu.Lock()
		defer snd.mu.Unlock()
		return len(snd.deleted)
	}
	waitFor(t, "the active to forget the applied deletes", 30*time.Second, func() bool { return remembered() == 0 })
}

// TestCommitsShareDirectoryFsyncs: commits into one directory that run at
// once share the directory's fsync (one that starts after a commit's
// rename covers it): with a slow disk, eight files committed together cost
// two or three directory fsyncs, not eight.
func TestCommitsShareDirectoryFsyncs(t *testing.T) {
	dir := t.TempDir()
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	var mu sync.Mutex
	syncs := 0
	r.dirSynced = func(d string) {
		if d == "d" {
			mu.Lock()
			syncs++
			mu.Unlock()
			time.Sleep(100 * time.Millisecond) // a slow disk's fsync
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := put(t, r, fmt.Sprintf("d/f%d", i), []byte(fmt.Sprintf("file %d", i)), 4); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if syncs > 4 {
		t.Errorf("%d fsyncs of the directory for 8 commits at once; want them shared", syncs)
	}
	for i := range 8 {
		if b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("d/f%d", i))); err != nil || string(b) != fmt.Sprintf("file %d", i) {
			t.Errorf("d/f%d: %q, %v", i, b, err)
		}
	}
}

// TestPartialsBesideTheirFiles: an upload's partial file is made in the
// directory of the file it becomes (so the rename into place stays in one
// directory), is never listed in the manifest, and an abandoned one in a
// subdirectory is removed after PartialTimeout, while running and at start.
func TestPartialsBesideTheirFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return now }
	data := []byte("0123456789")
	e := Entry{Path: "a/b/rec.guac", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000}
	if _, err := r.begin(e); err != nil {
		t.Fatal(err)
	}
	if _, err := r.chunk(context.Background(), e, 0, ChunkSum(data[:4]), data[:4]); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(dir, filepath.FromSlash(partialName(e.Path)))
	if filepath.Dir(part) != filepath.Join(dir, "a", "b") {
		t.Fatalf("partial file at %s, want in a/b beside its file", part)
	}
	if _, err := os.Stat(part); err != nil {
		t.Fatalf("partial file: %v", err)
	}
	if m, err := r.manifest(); err != nil || len(m) != 0 {
		t.Errorf("manifest %v, %v; want no files (a partial is not one)", m, err)
	}
	now = now.Add(31 * time.Minute)
	if n := r.sweep(30*time.Minute, false); n != 1 {
		t.Errorf("sweep removed %d, want 1", n)
	}
	for _, p := range []string{part, part + ".meta"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after the sweep: %v, want it gone", p, err)
		}
	}
	// A commit into a new directory, then a leftover from before a restart
	// deep in another one, old enough to go.
	e2 := Entry{Path: "c/d/e.bin", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000, SHA256: sum(data)}
	if _, err := r.begin(e2); err != nil {
		t.Fatal(err)
	}
	if _, err := r.chunk(context.Background(), e2, 0, ChunkSum(data), data); err != nil {
		t.Fatal(err)
	}
	if _, err := r.commit(e2); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "c", "d", "e.bin")); err != nil || string(got) != string(data) {
		t.Fatalf("committed file: %q, %v", got, err)
	}
	r.close()
	left := filepath.Join(dir, "x", "y", partialPrefix+"0123")
	if err := os.MkdirAll(filepath.Dir(left), 0o755); err != nil {
		t.Fatal(err)
	}
	leaveOld(t, left)
	restartStandby(t, dir)
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("an old partial file in x/y after a restart: %v, want it removed", err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "c", "d"))
	if len(ents) != 1 {
		t.Errorf("c/d holds %d entries, want only e.bin", len(ents))
	}
}

// TestAbandonedUploadLeavesNoEmptyDirectory: the directories an upload's
// begin made go with its partial file when the upload is given up (swept
// while running, a leftover at start, a whole file refused); a directory
// with a file in it stays, and so does the folder. Before, an empty
// directory stayed on the standby.
func TestAbandonedUploadLeavesNoEmptyDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return now }
	data := []byte("0123456789abcdefghij")
	if _, err := put(t, r, "keep/kept.bin", data, 8); err != nil {
		t.Fatal(err)
	}
	idle := Entry{Path: "a/b/c/idle.bin", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000}
	beside := Entry{Path: "keep/idle.bin", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000}
	for _, e := range []Entry{idle, beside} {
		if _, err := r.begin(e); err != nil {
			t.Fatal(err)
		}
		if _, err := r.chunk(context.Background(), e, 0, ChunkSum(data[:5]), data[:5]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a/b/c")); err != nil {
		t.Fatalf("the upload's directories: %v", err)
	}
	now = now.Add(31 * time.Minute)
	if n := r.sweep(30*time.Minute, false); n != 2 {
		t.Errorf("sweep removed %d uploads, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Errorf("a/b/c of the abandoned upload: %v, want them gone", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "keep/kept.bin")); err != nil || string(b) != string(data) {
		t.Errorf("keep/kept.bin: %q, %v; want it kept", b, err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the folder itself: %v", err)
	}

	// A whole file refused (its CRC-32C does not match) leaves nothing.
	bad := append([]byte{}, data...)
	bad[0] ^= 1
	e := Entry{Path: "d/e/refused.bin", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000}
	if err := r.beginAfresh(e); err != nil {
		t.Fatal(err)
	}
	if _, err := r.chunk(context.Background(), e, 0, ChunkSum(data), bad); ha.KindOf(err) != ha.KindInvalid {
		t.Fatalf("a corrupt whole file: %v, want Invalid", err)
	}
	r.drop(e.Path)
	if _, err := os.Stat(filepath.Join(dir, "d")); !os.IsNotExist(err) {
		t.Errorf("d/e of the refused file: %v, want them gone", err)
	}

	// A leftover of before a restart, in directories of its own, goes at
	// start with them.
	r.close()
	left := filepath.Join(dir, "x/y", filepath.Base(partialName("x/y/old.bin")))
	if err := os.MkdirAll(filepath.Dir(left), 0o755); err != nil {
		t.Fatal(err)
	}
	leaveOld(t, left)
	restartStandby(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Errorf("x/y of a leftover upload after a restart: %v, want them gone", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep/kept.bin")); err != nil {
		t.Errorf("keep/kept.bin after a restart: %v", err)
	}
}

// leaveOld writes a leftover file at path, two hours old.
func leaveOld(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(path, long, long); err != nil {
		t.Fatal(err)
	}
}

// restartStandby starts the folder service of n2, a standby, on dir (its
// folder "rec"), as its agent does when it starts, and closes it at the
// end of t.
func restartStandby(t *testing.T, dir string) {
	t.Helper()
	s, err := New(Options{Node: "n2", Folders: []Folder{{Name: "rec", Path: dir}},
		Role:   func() (bool, ha.Epoch) { return false, 0 },
		Leader: func() ha.Leader { return ha.Leader{} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
}
