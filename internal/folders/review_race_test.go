package folders

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
)

// TestDeleteDuringUploadOfNewFile (review of folders8): a new file is
// deleted on the active (delete: mirror) while its first upload to the
// standby is in flight. The sender plans while the upload runs; that plan
// has no delete to make (the standby does not hold the file yet), so it
// must not count the delete as applied there: once the upload lands, the
// file has to be deleted on the standby. Before, the plan marked the
// standby clean, the sender forgot the delete, and the file stayed on the
// standby for good (resurrected: on the new active after a promotion).
func TestDeleteDuringUploadOfNewFile(t *testing.T) {
	t.Parallel()
	p := newPairPrepared(t, Folder{Name: "rec", Quiet: 20 * time.Millisecond, Mirror: true}, time.Minute, nil, func(o *Options) {
		o.Client = api.NewClient(api.ClientOptions{Token: pairToken, Timeout: 2 * time.Minute})
	})
	name := "new.bin"
	release := p.holdUpload(t, name, 200<<10)
	if err := os.Remove(filepath.Join(p.dirA, name)); err != nil {
		t.Fatal(err)
	}
	snd := p.a.sender("rec")
	if snd == nil {
		t.Fatal("n1 has no sender")
	}
	waitFor(t, "n1 to see the file gone", 10*time.Second, func() bool {
		snd.mu.Lock()
		defer snd.mu.Unlock()
		_, ok := snd.local[name]
		return !ok
	})
	// A plan after the delete, while the upload is held: a change makes
	// one within maxReplan; and a file change bumps a plan on its own.
	plans := snd.plans.Load()
	if err := os.WriteFile(filepath.Join(p.dirA, "other.txt"), []byte("a change to plan on"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 to plan twice while the upload is held", 10*time.Second, func() bool { return snd.plans.Load() >= plans+2 })
	release()
	waitFor(t, "n2 in sync", 20*time.Second, func() bool {
		st := p.a.Stats()
		return len(st) == 1 && st[0].Files == 0 && sameContent(filepath.Join(p.dirA, "other.txt"), filepath.Join(p.dirB, "other.txt")) && snd.plans.Load() >= plans+4
	})
	waitFor(t, name+" deleted on n2 (deleted on n1 while its upload ran)", 5*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(p.dirB, name))
		return os.IsNotExist(err)
	})
}

// TestHungListHoldsNothingBack (review of folders8): the list of complete
// files is sent from the sender's loop itself; while a standby does not
// answer it (frozen, a stuck disk: up to the client's timeout, 30 s by
// default), the loop started no upload and refreshed no lag. A file closed
// meanwhile must still reach the standby, and the standby's lag must still
// say so.
func TestHungListHoldsNothingBack(t *testing.T) {
	t.Parallel()
	p := newPairPrepared(t, Folder{Name: "rec", Quiet: 20 * time.Millisecond}, 300*time.Millisecond, nil, func(o *Options) {
		o.Client = api.NewClient(api.ClientOptions{Token: pairToken, Timeout: 2 * time.Minute})
	})
	gate := make(chan struct{})
	p.holdSources.Store(&gate)
	defer close(gate)
	if err := os.WriteFile(filepath.Join(p.dirA, "a.txt"), []byte("its list hangs at n2"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a list held at n2", 10*time.Second, func() bool { return p.sourcesHeld.Load() >= 1 })
	if err := os.WriteFile(filepath.Join(p.dirA, "b.txt"), []byte("closed while the list hangs"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a.txt and b.txt on n2 while the list hangs", 10*time.Second, func() bool {
		return sameContent(filepath.Join(p.dirA, "a.txt"), filepath.Join(p.dirB, "a.txt")) &&
			sameContent(filepath.Join(p.dirA, "b.txt"), filepath.Join(p.dirB, "b.txt"))
	})
	waitFor(t, "n2 in sync in the stats while the list hangs", 10*time.Second, func() bool {
		st := p.a.Stats()
		return len(st) == 1 && st[0].Files == 0 && !st[0].Behind
	})
}

// TestDeleteIsDurable (review of folders8): a delete (delete: mirror) the
// receiver answered is made durable first, as a commit's rename is: its
// directory is fsynced. Without it, after a power cut of the standby the
// file may be back, while the active, told it was deleted, forgot the
// delete once every receiver had applied it: the file would stay there
// for good (on the new active after a promotion).
func TestDeleteIsDurable(t *testing.T) {
	dir := t.TempDir()
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "x.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var synced []string
	r.dirSynced = func(d string) { synced = append(synced, d) }
	if err := r.remove(Entry{Path: "sub/x.txt"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub", "x.txt")); !os.IsNotExist(err) {
		t.Fatalf("sub/x.txt still there: %v", err)
	}
	if len(synced) != 1 || synced[0] != "sub" {
		t.Errorf("directories fsynced by the delete: %q; want [sub]", synced)
	}
}

// TestLateCommitDoesNotReplaceANewerVersion (review of folders8): a
// commit slow in its fsync (a big file on a busy disk) outlasts its
// sender's timeout; the sender asks again and ships the newer version of
// the file, which lands first. The older commit must not then rename its
// version over the newer one: the sender, told the newer one landed,
// would believe the standby in sync for good.
func TestLateCommitDoesNotReplaceANewerVersion(t *testing.T) {
	dir := t.TempDir()
	r, err := newReceiver("rec", dir, "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	r.beforeLand = func(string) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	}
	put := func(data string, mtime int64) error {
		sum := sha256.Sum256([]byte(data))
		e := Entry{Path: "d/f.txt", Size: int64(len(data)), MTime: mtime, Mode: 0o644, SHA256: hex.EncodeToString(sum[:])}
		if err := r.beginAfresh(e); err != nil {
			return err
		}
		if _, err := r.chunk(context.Background(), e, 0, "", []byte(data)); err != nil {
			return err
		}
		_, err := r.commit(e)
		return err
	}
	late := make(chan error, 1)
	go func() { late <- put("version 1", 1e18) }()
	<-entered
	if err := put("version 2, newer", 1e18+1); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-late // its error, if any, reaches no one: the sender gave up on it
	b, err := os.ReadFile(filepath.Join(dir, "d", "f.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "version 2, newer" {
		t.Errorf("d/f.txt holds %q after the late commit of version 1; want version 2", b)
	}
}

// TestOlderListIsRefused (review of folders8): a list of complete files of
// an earlier active (an earlier epoch) that arrives late, after the new
// active's, is refused: the list a later promotion compares with must be
// the latest active's.
func TestOlderListIsRefused(t *testing.T) {
	r, err := newReceiver("rec", t.TempDir(), "n2", Matcher{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if err := r.setSource(api.FolderSource{From: "n3", Epoch: 8, Entries: []Entry{{Path: "new"}}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := r.setSource(api.FolderSource{From: "n1", Epoch: 7, Entries: []Entry{{Path: "old"}}}, time.Now()); err == nil {
		t.Error("a list of epoch 7 was taken after one of epoch 8")
	}
	if src := r.lastSource(); src == nil || src.Epoch != 8 || src.From != "n3" {
		t.Errorf("list held: %+v; want n3's of epoch 8", src)
	}
}
