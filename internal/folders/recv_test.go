package folders

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// put uploads data as p in chunks of n bytes.
func put(t *testing.T, r *receiver, p string, data []byte, n int) (Entry, error) {
	t.Helper()
	e := Entry{Path: p, Size: int64(len(data)), MTime: 1_700_000_000_000_000_000, Mode: 0o640}
	off, err := r.begin(e)
	if err != nil {
		return Entry{}, err
	}
	for off < e.Size {
		end := min(off+int64(n), e.Size)
		if off, err = r.chunk(context.Background(), e, off, ChunkSum(data[off:end]), data[off:end]); err != nil {
			return Entry{}, err
		}
	}
	e.SHA256 = sum(data)
	return r.commit(e)
}

func TestReceiverWritesAtomicallyAndResumes(t *testing.T) {
	dir := t.TempDir()
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	data := []byte("hello, replicated world: twenty-nine+ bytes")
	e := Entry{Path: "a/b/c.txt", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000, Mode: 0o600}
	if _, err := r.begin(e); err != nil {
		t.Fatal(err)
	}
	if _, err := r.chunk(context.Background(), e, 0, ChunkSum(data[:10]), data[:10]); err != nil {
		t.Fatal(err)
	}
	// A corrupt chunk is refused and changes nothing.
	bad := append([]byte{}, data[10:20]...)
	bad[0] ^= 1
	if _, err := r.chunk(context.Background(), e, 10, ChunkSum(data[10:20]), bad); ha.KindOf(err) != ha.KindInvalid {
		t.Fatalf("corrupt chunk: %v, want Invalid", err)
	}
	// Nothing is visible before the commit.
	if _, err := os.Stat(filepath.Join(dir, "a/b/c.txt")); !os.IsNotExist(err) {
		t.Fatalf("half a file is visible: %v", err)
	}
	// A restart of the receiver: the upload resumes where it was.
	r.close()
	if r, err = newReceiver("rec", dir, "n2", Matcher{}); err != nil {
		t.Fatal(err)
	}
	off, err := r.begin(e)
	if err != nil || off != 10 {
		t.Fatalf("resume at %d, %v; want 10", off, err)
	}
	if _, err := r.chunk(context.Background(), e, off, ChunkSum(data[10:]), data[10:]); err != nil {
		t.Fatal(err)
	}
	wrong := e
	wrong.SHA256 = sum([]byte("something else"))
	if _, err := r.commit(wrong); ha.KindOf(err) != ha.KindInvalid {
		t.Fatalf("commit with a wrong sum: %v, want Invalid", err)
	}
	// An upload from its first byte is not hashed again (its chunks'
	// CRC-32C were checked), but the sum it is committed with must be one.
	if _, err := r.begin(Entry{Path: "fresh", Size: 3, MTime: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.chunk(context.Background(), Entry{Path: "fresh", Size: 3, MTime: 1}, 0, ChunkSum([]byte("abc")), []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.commit(Entry{Path: "fresh", Size: 3, MTime: 1, SHA256: "not-a-sum"}); ha.KindOf(err) != ha.KindInvalid {
		t.Fatalf("commit with a malformed sum: %v, want Invalid", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "fresh")); !os.IsNotExist(err) {
		t.Fatalf("a refused commit left the file: %v", err)
	}
	got, err := put(t, r, e.Path, data, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "a/b/c.txt"))
	if err != nil || string(b) != string(data) {
		t.Fatalf("content %q, %v", b, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "a/b/c.txt"))
	if fi.ModTime().UnixNano() != e.MTime || fi.Mode().Perm() != 0o640 || got.SHA256 != sum(data) {
		t.Errorf("mtime %v mode %v sum %s", fi.ModTime(), fi.Mode(), got.SHA256)
	}
	m, err := r.manifest()
	if err != nil || len(m) != 1 || m[0].SHA256 != sum(data) {
		t.Errorf("manifest %+v, %v", m, err)
	}
	// An empty file.
	if _, err := put(t, r, "empty", nil, 4); err != nil {
		t.Fatal(err)
	}
	if err := r.remove(Entry{Path: "empty"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "empty")); !os.IsNotExist(err) {
		t.Errorf("removed file still there: %v", err)
	}
}

// TestReceiverNeverWritesOutside: paths with "..", absolute paths and
// symbolic links inside the folder that lead out are refused, and nothing
// appears outside the folder.
func TestReceiverNeverWritesOutside(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "folder")
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "victim"), filepath.Join(dir, "filelink")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../outside/x", "/etc/x", "link/x", "link/sub/x", "a/../../outside/x", ".haven-sync/partial/x"} {
		if _, err := put(t, r, p, []byte("evil"), 2); err == nil {
			t.Errorf("%s: written", p)
		} else if k := ha.KindOf(err); k != ha.KindInvalid {
			t.Errorf("%s: kind %v (%v), want Invalid", p, k, err)
		}
	}
	// Replacing a symbolic link replaces the link, never its target.
	if _, err := put(t, r, "filelink", []byte("new"), 2); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "keep me" {
		t.Errorf("the link's target was written: %q", b)
	}
	if err := r.remove(Entry{Path: "link/victim"}); err == nil {
		t.Error("remove through a link that leads out succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "keep me" {
		t.Errorf("the link's target changed: %q", b)
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 {
		t.Errorf("outside has %d entries, want 1 (victim)", len(ents))
	}
}

// TestChunkAheadWaitsForItsTurn: a sender keeps two chunks of a file on the
// wire; the second may arrive first. It waits until the first is written
// (then both are in), and gives up when its request ends.
func TestChunkAheadWaitsForItsTurn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	data := []byte("0123456789abcdefghij")
	e := Entry{Path: "ahead", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000, Mode: 0o644}
	if _, err := r.begin(e); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		_, err := r.chunk(context.Background(), e, 10, ChunkSum(data[10:]), data[10:])
		second <- err
	}()
	select {
	case err := <-second:
		t.Fatalf("the chunk ahead of its turn did not wait: %v", err)
	case <-time.After(100 * time.Millisecond): // it waits (a wrong answer would come at once)
	}
	if _, err := r.chunk(context.Background(), e, 0, ChunkSum(data[:10]), data[:10]); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the chunk after its turn came: %v", err)
	}
	e.SHA256 = sum(data)
	if _, err := r.commit(e); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ahead")); string(b) != string(data) {
		t.Fatalf("ahead holds %q, want %q", b, data)
	}

	// A chunk ahead whose sender gives up (its request ends) is refused.
	e2 := Entry{Path: "given-up", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000, Mode: 0o644}
	if _, err := r.begin(e2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, err := r.chunk(ctx, e2, 10, ChunkSum(data[10:]), data[10:])
		second <- err
	}()
	cancel()
	if err := <-second; ha.KindOf(err) != ha.KindConflict {
		t.Fatalf("a chunk ahead whose request ended: %v, want Conflict", err)
	}
	// And one far ahead (more than the chunks in flight) is refused at once.
	if _, err := r.chunk(context.Background(), e2, int64(chunksInFlight)*api.MaxFolderChunk, ChunkSum(data[10:]), data[10:]); ha.KindOf(err) != ha.KindConflict {
		t.Fatalf("a chunk far ahead: %v, want Conflict at once", err)
	}
}

// TestWholeFileIsLinkedIntoPlace: a whole file in one request is written
// into an unnamed file (O_TMPFILE) in its directory and linked into place
// by its commit, with its mode and modification time (to the nanosecond),
// whether the path is new or holds an older version; no partial file is
// left, and one given up leaves nothing on disk.
func TestWholeFileIsLinkedIntoPlace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	whole := func(p string, data []byte, mtime int64) {
		t.Helper()
		e := Entry{Path: p, Size: int64(len(data)), MTime: mtime, Mode: 0o640}
		if err := r.beginAfresh(e); err != nil {
			t.Fatal(err)
		}
		if _, err := r.chunk(context.Background(), e, 0, ChunkSum(data), data); err != nil {
			t.Fatal(err)
		}
		e.SHA256 = sum(data)
		if _, err := r.commit(e); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, p)); string(b) != string(data) || fi.Mode().Perm() != 0o640 || fi.ModTime().UnixNano() != mtime {
			t.Fatalf("%s: %q, mode %v, mtime %d; want %q, 0640, %d", p, b, fi.Mode().Perm(), fi.ModTime().UnixNano(), data, mtime)
		}
	}
	whole("sub/new.txt", []byte("first"), 1_700_000_000_123_456_789)
	whole("sub/new.txt", []byte("second version"), 1_700_000_001_987_654_321)
	if !r.noTmp {
		e := Entry{Path: "sub/given-up.txt", Size: 5, MTime: 1}
		if err := r.beginAfresh(e); err != nil {
			t.Fatal(err)
		}
		r.drop(e.Path)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "sub"))
	if len(ents) != 1 || ents[0].Name() != "new.txt" {
		var names []string
		for _, d := range ents {
			names = append(names, d.Name())
		}
		t.Fatalf("sub holds %v, want only new.txt", names)
	}
}
