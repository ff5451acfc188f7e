package folders

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

// receiver is the standby's side of one folder: every write goes through
// an os.Root opened on the folder, so that no path, symbolic link or ".."
// can make it write outside; uploads land in a partial file beside their
// destination (partialPrefix) and are renamed into place only once whole
// and checked (every chunk's CRC-32C, or over TLS the AEAD of every TLS
// record; a resumed one's SHA-256), so readers never see half a file.
type receiver struct {
	name  string
	dir   string
	node  string // this node, for messages
	match Matcher

	mu      sync.Mutex
	root    *os.Root
	sums    map[string]Entry // SHA-256 of files received, valid while size and mtime match
	uploads map[string]*upload
	source  *api.FolderSource // the active's last list of complete files
	// sourceAt is when source arrived (after a restart: its file's
	// modification time): files completed on the active after it are
	// not in it, so a promotion's lost count is a lower bound as of then.
	sourceAt time.Time
	// sourceTaken: source was taken by this run (setSource), not read
	// from disk at start.
	sourceTaken bool
	// dirSynced, when set (tests), is told of every directory fsynced.
	dirSynced func(dir string)
	// beforeLand, when set (tests), is called by a commit once its file
	// is fsynced, before it is linked or renamed into place.
	beforeLand func(p string)
	// syncs coalesces the directory fsyncs of commits that run at once:
	// one fsync started after a commit's rename covers it (group commit).
	smu   sync.Mutex
	syncs map[string]*dirSync
	seq   uint64          // numbers the partial files of whole-file uploads
	noTmp bool            // the file system has no O_TMPFILE (or no /proc): named partial files only
	busy  map[string]bool // partial files (relative paths) a commit is renaming into place
	// landing: by path, the commit past its claim (fsync, rename) of the
	// latest upload of that path. A begin of the path marks it superseded:
	// a commit whose sender gave up on it (its timeout, during a slow
	// fsync) must not land after the newer version shipped next.
	landing map[string]*upload
	// pdirs are the directories that may hold partial files: those seen
	// with some at start and those of uploads begun since; a sweep looks
	// in these only (and forgets one it finds empty of them).
	pdirs map[string]bool
	now   func() time.Time // the Service's clock
}

// upload is a file being received: a partial file beside it and, for one
// resumed from what an earlier run left, the running hash of what it holds.
type upload struct {
	file    Entry
	partial string // relative to the root
	f       *os.File
	// h hashes the upload (SHA-256) when it resumed a partial file of an
	// earlier run, whose bytes this run did not check: the commit compares
	// it with the sender's sum. An upload from its first byte has none:
	// every byte of it arrived in a chunk whose CRC-32C was checked on
	// the very bytes written (over TLS, in records whose AEAD tag was
	// checked: the sender then sends no CRC-32C), and the sender hashed
	// the very bytes it put in the chunks, so a second SHA-256 pass would
	// check nothing more.
	h    hash.Hash
	off  int64
	last time.Time // the last begin or chunk: an upload quiet for partialTimeout is abandoned

	// mu guards f, h, off and last: a chunk is written and hashed under it
	// alone, so that other files' uploads go on meanwhile. Lock order:
	// receiver.mu, then upload.mu (never the other way round).
	mu   sync.Mutex
	done bool // committed or discarded: a chunk arriving now begins again
	// moved is closed (and replaced) when off moves or done is set: a
	// chunk that arrived ahead of its turn waits on it (chunksInFlight).
	moved chan struct{}
	// resumable: a begin may resume it (a meta file beside it says which
	// version it is). A whole file in one request is not: its partial has
	// a name of its own, so its commit needs not move it aside first.
	resumable bool
	// tmp: a whole file's upload into an unnamed file (O_TMPFILE) in its
	// destination's directory, linked into place by its commit: nothing
	// to create, rename or sweep; partial is only its name's stand-in.
	tmp bool
	// superseded (guarded by receiver.mu): an upload of the same path
	// began after this one's commit claimed it; the commit drops it.
	superseded bool
}

func newReceiver(name, dir, node string, m Matcher) (*receiver, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("folder %s: create %s: %w", name, dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("folder %s: open %s: %w", name, dir, err)
	}
	if err := root.MkdirAll(stateDir, 0o700); err != nil {
		root.Close()
		return nil, fmt.Errorf("folder %s: create %s in %s: %w", name, stateDir, dir, err)
	}
	r := &receiver{name: name, dir: dir, node: node, match: m, root: root, sums: map[string]Entry{}, uploads: map[string]*upload{}, now: time.Now, syncs: map[string]*dirSync{}, busy: map[string]bool{}, pdirs: map[string]bool{}, landing: map[string]*upload{}}
	if b, err := root.ReadFile(path.Join(stateDir, "source.json")); err == nil {
		var s api.FolderSource
		if json.Unmarshal(b, &s) == nil {
			r.source = &s
			if fi, err := root.Stat(path.Join(stateDir, "source.json")); err == nil {
				r.sourceAt = fi.ModTime()
			}
		}
	}
	return r, nil
}

func (r *receiver) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropUploads()
	_ = r.root.Close()
}

// dropUploads closes the open partial files (they stay on disk, to resume).
func (r *receiver) dropUploads() {
	for p, u := range r.uploads {
		u.mu.Lock()
		if u.f != nil {
			_ = u.f.Close()
		}
		u.finish()
		u.mu.Unlock()
		delete(r.uploads, p)
	}
}

// finish marks the upload done and wakes the chunks waiting for their
// turn. Called with u.mu held.
func (u *upload) finish() {
	u.done = true
	u.wake()
}

// wake tells the chunks waiting for their turn that off moved or the
// upload is done. Called with u.mu held.
func (u *upload) wake() {
	close(u.moved)
	u.moved = make(chan struct{})
}

// manifest lists what the folder holds now, with the SHA-256 of the files
// this node received and has not seen change since.
func (r *receiver) manifest() ([]Entry, error) {
	have, err := scan(r.dir, r.match)
	if err != nil {
		return nil, fmt.Errorf("folder %s: list %s: %w", r.name, r.dir, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entry, 0, len(have))
	for p, e := range have {
		if s, ok := r.sums[p]; ok && s.Size == e.Size && s.MTime == e.MTime {
			e.SHA256 = s.SHA256
		}
		out = append(out, e)
	}
	return out, nil
}

func checkFile(e Entry) (string, error) {
	p, err := CleanPath(e.Path)
	if err != nil {
		return "", ha.Errorf(ha.KindInvalid, "%v", err)
	}
	if e.Size < 0 {
		return "", ha.Errorf(ha.KindInvalid, "file %s: negative size", p)
	}
	return p, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// chunkTurnWait bounds how long a chunk that arrived ahead of its turn
// waits for the chunks before it (a sender that lost one gives up sooner).
const chunkTurnWait = time.Minute

// ChunkSum is a chunk's checksum as sent: CRC-32C in 8 hex digits
// (hardware-assisted, so that a 100 MiB file costs no extra SHA-256 passes).
func ChunkSum(data []byte) string {
	return fmt.Sprintf("%08x", crc32.Checksum(data, castagnoli))
}

// partialName is the partial file of an upload of p: in p's directory, so
// that the commit's rename stays in one directory, and named by a hash of
// p, so that the name fits whatever p's length.
func partialName(p string) string {
	s := sha256.Sum256([]byte(p))
	return path.Join(path.Dir(p), partialPrefix+hex.EncodeToString(s[:20]))
}

// begin opens (or resumes) the upload of e and says how much of it is here.
func (r *receiver) begin(e Entry) (int64, error) { return r.open(e, true) }

// beginAfresh opens the upload of e from its first byte, whatever part of
// it is here already (a whole file in one request starts at 0).
func (r *receiver) beginAfresh(e Entry) error {
	_, err := r.open(e, false)
	return err
}

func (r *receiver) open(e Entry, resume bool) (int64, error) {
	p, err := checkFile(e)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.landing[p]; l != nil {
		l.superseded = true // this upload is newer
	}
	if u, ok := r.uploads[p]; ok && resume && u.file.Size == e.Size && u.file.MTime == e.MTime {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.last = r.now()
		return u.off, nil
	}
	if u, ok := r.uploads[p]; ok {
		if u.resumable {
			u.mu.Lock()
			_ = u.f.Close()
			u.finish()
			u.mu.Unlock()
			delete(r.uploads, p)
		} else {
			r.discard(p, u) // a whole file's partial is never resumed
		}
	}
	u := &upload{file: Entry{Path: p, Size: e.Size, MTime: e.MTime, Mode: e.Mode}, partial: partialName(p), h: sha256.New(), resumable: resume, moved: make(chan struct{})}
	if !resume {
		r.seq++
		u.partial += fmt.Sprintf(".%d", r.seq)
	}
	meta, _ := json.Marshal(u.file)
	if !resume {
		// From the first byte.
	} else if old, err := r.root.ReadFile(u.partial + ".meta"); err == nil && bytes.Equal(old, meta) {
		// A partial of this very version, from before a cut or a restart:
		// resume after re-reading what it holds.
		if f, err := r.root.OpenFile(u.partial, os.O_RDWR, 0o600); err == nil {
			n, err := io.Copy(u.h, f)
			if err == nil && n <= e.Size {
				u.f, u.off, u.last = f, n, r.now()
				r.uploads[p] = u
				return n, nil
			}
			_ = f.Close()
		}
	}
	u.h = nil // from the first byte
	if !resume && !r.noTmp {
		f, err := r.root.OpenFile(path.Dir(p), unix.O_TMPFILE|os.O_RDWR, 0o600)
		if errors.Is(err, fs.ErrNotExist) { // its directories are made now
			if err = r.mkdirs(path.Dir(p)); err == nil {
				f, err = r.root.OpenFile(path.Dir(p), unix.O_TMPFILE|os.O_RDWR, 0o600)
			}
		}
		if err == nil {
			if _, serr := os.Stat(procFd(f)); serr != nil {
				_ = f.Close() // no /proc: an unnamed file could not be linked
				err = syscall.EOPNOTSUPP
			}
		}
		switch {
		case err == nil:
			u.f, u.last, u.tmp = f, r.now(), true
			r.uploads[p] = u
			return 0, nil
		case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.EISDIR):
			r.noTmp = true // named partial files from now on
		}
	}
	r.pdirs[path.Dir(p)] = true
	f, err := r.root.OpenFile(u.partial, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if errors.Is(err, fs.ErrNotExist) { // its directories are made now
		if err = r.mkdirs(path.Dir(p)); err == nil {
			f, err = r.root.OpenFile(u.partial, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		}
	}
	if errors.Is(err, syscall.ENOTDIR) {
		err = fmt.Errorf("a file is in the way of its directory: %w", err)
	}
	if err != nil {
		return 0, r.writeErr(p, err)
	}
	// The meta file lets a later begin resume this upload; a whole file
	// in one request (beginAfresh) never resumes: it needs none.
	if resume {
		if err := r.root.WriteFile(u.partial+".meta", meta, 0o600); err != nil {
			_ = f.Close()
			return 0, r.writeErr(p, err)
		}
	}
	u.f, u.last = f, r.now()
	r.uploads[p] = u
	return 0, nil
}

// chunk writes data at off of the upload of e, after checking its
// CRC-32C sum (none, "", over TLS: see api.FolderManifest.ChunkSumOptional).
func (r *receiver) chunk(ctx context.Context, e Entry, off int64, sum string, data []byte) (int64, error) {
	p, err := checkFile(e)
	if err != nil {
		return 0, err
	}
	if sum != "" && ChunkSum(data) != sum {
		return 0, ha.Errorf(ha.KindInvalid, "chunk at %d of %s: CRC-32C mismatch (corrupted on the way); send it again", off, p)
	}
	r.mu.Lock()
	u, ok := r.uploads[p]
	r.mu.Unlock()
	if !ok || u.file.Size != e.Size || u.file.MTime != e.MTime {
		return 0, ha.Errorf(ha.KindConflict, "no upload of this version of %s in progress; begin it again", p)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	// A sender keeps chunksInFlight chunks of a file on the wire: one that
	// arrives before the chunk ahead of it is written waits for its turn
	// (its bytes are read already: the transfer overlapped that write).
	if off > u.off && off-u.off <= int64(chunksInFlight-1)*api.MaxFolderChunk {
		t := time.NewTimer(chunkTurnWait)
		defer t.Stop()
	wait:
		for !u.done && off > u.off {
			moved := u.moved
			u.mu.Unlock()
			select {
			case <-moved:
				u.mu.Lock()
			case <-ctx.Done():
				u.mu.Lock()
				break wait
			case <-t.C:
				u.mu.Lock()
				break wait
			}
		}
	}
	if u.done {
		return 0, ha.Errorf(ha.KindConflict, "no upload of this version of %s in progress; begin it again", p)
	}
	if off != u.off {
		return u.off, ha.Errorf(ha.KindConflict, "chunk at %d of %s, but %d bytes are here; begin it again", off, p, u.off)
	}
	if u.off+int64(len(data)) > u.file.Size {
		return u.off, ha.Errorf(ha.KindInvalid, "chunk at %d of %s runs past its size %d", off, p, u.file.Size)
	}
	if _, err := u.f.WriteAt(data, off); err != nil {
		return u.off, r.writeErr(p, err)
	}
	if u.h != nil {
		u.h.Write(data)
	}
	u.off += int64(len(data))
	u.last = r.now()
	u.wake()
	return u.off, nil
}

// commit checks the upload of e against its SHA-256 (a resumed one; see
// upload.h), makes it durable and renames it into place.
func (r *receiver) commit(e Entry) (Entry, error) {
	out, err := r.commitUnsynced(e)
	if err == nil {
		r.syncDir(path.Dir(out.Path)) // the rename survives a crash
	}
	return out, err
}

// commitUnsynced is commit without the fsync of the file's directory: the
// caller fsyncs it (syncDir of path.Dir of the path) before it answers,
// once for the files of a batch in one directory.
func (r *receiver) commitUnsynced(e Entry) (Entry, error) {
	p, err := checkFile(e)
	if err != nil {
		return Entry{}, err
	}
	r.mu.Lock()
	u, ok := r.uploads[p]
	if !ok || u.file.Size != e.Size || u.file.MTime != e.MTime {
		r.mu.Unlock()
		return Entry{}, ha.Errorf(ha.KindConflict, "no upload of this version of %s in progress; begin it again", p)
	}
	u.mu.Lock()
	if u.off != u.file.Size {
		u.mu.Unlock()
		r.mu.Unlock()
		return Entry{}, ha.Errorf(ha.KindConflict, "%s: %d of %d bytes are here; send the rest", p, u.off, u.file.Size)
	}
	sum := e.SHA256 // the sender's, of the bytes it put in the checked chunks
	if u.h != nil {
		sum = hex.EncodeToString(u.h.Sum(nil))
	}
	u.finish() // the upload is this call's now
	u.mu.Unlock()
	if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != sha256.Size {
		r.discard(p, u)
		r.mu.Unlock()
		return Entry{}, ha.Errorf(ha.KindInvalid, "%s: SHA-256 %q is not 64 hex digits; send the file's SHA-256", p, e.SHA256)
	}
	if sum != e.SHA256 {
		r.discard(p, u)
		r.mu.Unlock()
		return Entry{}, ha.Errorf(ha.KindInvalid, "%s: SHA-256 of what arrived is %s, the active says %s (the file changed while it was sent?); send it again", p, sum, e.SHA256)
	}
	// The upload is this call's now: the slow part (fsync) runs without
	// the lock, so that other files' chunks and commits go on; only the
	// rename (or link) into place takes it again. A begin of the same
	// path meanwhile makes a new partial file, not this one (a resumable
	// one moves aside first; a whole file's partial has a name of its own
	// already), and makes this commit drop its version (landing).
	delete(r.uploads, p)
	if u.resumable {
		claimed := u.partial + ".commit"
		err = r.root.Rename(u.partial, claimed)
		if err == nil {
			_ = r.root.Remove(u.partial + ".meta")
			u.partial = claimed
		}
	}
	claimed := u.partial
	r.busy[claimed] = true
	if l := r.landing[p]; l != nil {
		l.superseded = true
	}
	r.landing[p] = u
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.busy, claimed)
		if r.landing[p] == u {
			delete(r.landing, p)
		}
		r.mu.Unlock()
	}()
	done := func(err error) (Entry, error) {
		if u.f != nil {
			_ = u.f.Close()
		}
		if u.partial != p { // not an unnamed file linked into place already
			_ = r.root.Remove(u.partial)
		}
		return Entry{}, r.writeErr(p, err)
	}
	if err != nil {
		return done(err)
	}
	// Mode and modification time before the fsync, so that it covers
	// them too; by the open file where the system allows.
	mode := fs.FileMode(e.Mode).Perm()
	if mode == 0 {
		mode = 0o644
	}
	if err := u.f.Chmod(mode); err != nil {
		return done(err)
	}
	mt := time.Unix(0, e.MTime)
	if u.tmp {
		ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, procFd(u.f), ts, 0); err != nil {
			return done(err)
		}
	} else if err := r.root.Chtimes(u.partial, mt, mt); err != nil {
		return done(err)
	}
	if err := u.f.Sync(); err != nil {
		return done(err)
	}
	if r.beforeLand != nil {
		r.beforeLand(p)
	}
	// Into place under the lock: a begin of p (open) marks this upload
	// superseded either before (it is dropped) or after it landed.
	r.mu.Lock()
	if u.superseded {
		r.mu.Unlock()
		_ = u.f.Close()
		u.f = nil
		if !u.tmp {
			_ = r.root.Remove(u.partial)
		}
		return Entry{}, ha.Errorf(ha.KindConflict, "%s: a later upload of it began while this one was committed (its sender gave up on it?); this one is dropped", p)
	}
	if err := r.land(u, p); err != nil {
		r.mu.Unlock()
		return done(err)
	}
	out := Entry{Path: p, Size: e.Size, MTime: e.MTime, Mode: uint32(mode), SHA256: sum}
	r.sums[p] = out
	r.mu.Unlock()
	return out, nil
}

// land links or renames the fsynced upload u into place at p, in the same
// directory; its directories are made (and fsynced) again only when the
// rename finds them gone meanwhile. Called with r.mu held.
func (r *receiver) land(u *upload, p string) error {
	if u.tmp {
		// The unnamed file gets its name: at once when p is new (one
		// link instead of a create and a rename), else a partial's name
		// first and the rename over the old version below.
		err := r.link(u.f, p)
		if errors.Is(err, fs.ErrExist) {
			err = r.link(u.f, u.partial)
		} else if err == nil {
			u.partial = p // in place already
		}
		if err != nil {
			return err
		}
	}
	err := u.f.Close()
	u.f = nil
	if err != nil {
		return err
	}
	if u.partial != p {
		err = r.root.Rename(u.partial, p)
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err = r.mkdirs(path.Dir(p)); err == nil {
			err = r.root.Rename(u.partial, p)
		}
	}
	if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("a directory is in the way: %w", err)
	}
	return err
}

// procFd names the open file f by its descriptor in /proc (an unnamed
// file's only name).
func procFd(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// link gives the open unnamed file f the name p (relative to the root):
// linkat in p's directory, opened under the root, with a name of one
// component, so that the link cannot land outside the folder.
func (r *receiver) link(f *os.File, p string) error {
	d, err := r.root.Open(path.Dir(p))
	if errors.Is(err, fs.ErrNotExist) {
		if err = r.mkdirs(path.Dir(p)); err == nil {
			d, err = r.root.Open(path.Dir(p))
		}
	}
	if err != nil {
		return err
	}
	defer d.Close()
	err = unix.Linkat(unix.AT_FDCWD, procFd(f), int(d.Fd()), path.Base(p), unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return &fs.PathError{Op: "linkat", Path: p, Err: err}
	}
	return nil
}

// mkdirs makes the directory d (relative to the root) and those above it
// that are missing, and fsyncs the parent of each one it made, so that a
// committed file's directories survive a crash too, not only the rename.
func (r *receiver) mkdirs(d string) error {
	if d == "." {
		return nil
	}
	var made []string
	var dirs []string // d first, its parents after
	for cur := d; cur != "."; cur = path.Dir(cur) {
		dirs = append(dirs, cur)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		err := r.root.Mkdir(dirs[i], 0o755)
		switch {
		case err == nil:
			made = append(made, dirs[i])
		case errors.Is(err, fs.ErrExist):
		default:
			return err
		}
	}
	for _, m := range made {
		r.syncDir(path.Dir(m))
	}
	return nil
}

// dirSync is the state of one directory's fsyncs: asked counts the
// requests, done the ones an fsync that started after them has covered.
type dirSync struct {
	running     bool
	asked, done uint64
	cond        *sync.Cond
}

// syncDir fsyncs the directory d (relative to the root): the entries made
// in it survive a crash. Requests that arrive while an fsync of d runs
// share the next one. A failure is not an error of the write: the data
// is there, only its durability across a power cut is not known.
func (r *receiver) syncDir(d string) {
	r.smu.Lock()
	defer r.smu.Unlock()
	ds := r.syncs[d]
	if ds == nil {
		ds = &dirSync{cond: sync.NewCond(&r.smu)}
		r.syncs[d] = ds
	}
	ds.asked++
	mine := ds.asked
	for ds.done < mine {
		if ds.running {
			ds.cond.Wait()
			continue
		}
		ds.running = true
		upTo := ds.asked
		r.smu.Unlock()
		if f, err := r.root.Open(d); err == nil {
			_ = f.Sync()
			_ = f.Close()
		}
		if r.dirSynced != nil {
			r.dirSynced(d)
		}
		r.smu.Lock()
		ds.running, ds.done = false, upTo
		ds.cond.Broadcast()
	}
	if !ds.running && ds.done == ds.asked {
		delete(r.syncs, d)
	}
}

// sweep removes abandoned uploads: an upload no begin or chunk touched for
// timeout (its sender died, was demoted, or gave the file up), and any
// partial file that old and not an upload's. At start (no commit can be
// running) it looks through the whole folder, and also removes what a
// commit left when the agent stopped between claiming an upload and
// renaming it into place; while running it looks in the directories that
// may hold partial files only (pdirs).
func (r *receiver) sweep(timeout time.Duration, start bool) (removed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	mine := map[string]bool{}
	for p, u := range r.uploads {
		if !u.mu.TryLock() {
			continue // a chunk is being written: not abandoned
		}
		idle := now.Sub(u.last)
		u.mu.Unlock()
		if idle >= timeout {
			r.discard(p, u)
			removed++
			continue
		}
		mine[u.partial] = true
		mine[u.partial+".meta"] = true
	}
	if start {
		_ = r.root.Remove(path.Join(stateDir, "source.json.tmp"))
		// Partial files of before (in stateDir/partial) are not resumed.
		_ = r.root.RemoveAll(path.Join(stateDir, "partial"))
		r.pdirs = map[string]bool{}
		_ = filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(r.dir, p)
			if err != nil {
				return nil
			}
			rel = filepath.ToSlash(rel)
			if rel == stateDir {
				return filepath.SkipDir
			}
			r.pdirs[rel] = true // kept below only if it holds partial files
			return nil
		})
	}
	for dir := range r.pdirs {
		f, err := r.root.Open(dir)
		if err != nil {
			delete(r.pdirs, dir)
			continue
		}
		var ents []fs.DirEntry
		for {
			batch, err := f.ReadDir(1024)
			for _, d := range batch {
				if strings.HasPrefix(d.Name(), partialPrefix) && d.Type().IsRegular() {
					ents = append(ents, d)
				}
			}
			if err != nil {
				break
			}
		}
		_ = f.Close()
		left, gone := 0, 0
		for _, d := range ents {
			rel := path.Join(dir, d.Name())
			if mine[rel] || r.busy[rel] {
				left++
				continue
			}
			fi, err := d.Info()
			if err != nil {
				continue
			}
			claimed := strings.HasSuffix(d.Name(), ".commit") // a commit's: running, unless at start
			if (start && claimed) || (!claimed && now.Sub(fi.ModTime()) >= timeout) {
				if r.root.Remove(rel) == nil {
					removed++
					gone++
					continue
				}
			}
			left++
		}
		if left == 0 {
			delete(r.pdirs, dir)
		}
		if left == 0 && gone > 0 {
			r.prune(dir) // the directories the abandoned uploads made
		}
	}
	return removed
}

// drop discards the upload at path p, if any.
func (r *receiver) drop(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u, ok := r.uploads[p]; ok {
		r.discard(p, u)
	}
}

// discard forgets an upload and removes its partial file.
func (r *receiver) discard(p string, u *upload) {
	u.mu.Lock()
	if u.f != nil {
		_ = u.f.Close()
	}
	u.finish()
	u.mu.Unlock()
	if !u.tmp { // an unnamed file went with its close
		_ = r.root.Remove(u.partial)
		_ = r.root.Remove(u.partial + ".meta")
	}
	delete(r.uploads, p)
	r.prune(path.Dir(u.partial))
}

// prune removes the directory d (relative to the root) if it is empty,
// and then each parent left empty: an upload given up must not leave the
// directories its begin made (files only make directories here; one
// with files or anything else in it stays). Called with r.mu held, after
// removing a partial file from d.
func (r *receiver) prune(d string) {
	for ; d != "." && d != "/" && d != "" && d != stateDir; d = path.Dir(d) {
		if fi, err := r.root.Lstat(d); err != nil || !fi.IsDir() {
			return
		}
		if r.root.Remove(d) != nil { // not empty (or not ours to remove)
			return
		}
		delete(r.pdirs, d)
	}
}

// remove deletes the file at e.Path (delete: mirror); a missing file is fine.
func (r *receiver) remove(e Entry) error {
	p, err := checkFile(e)
	if err != nil {
		return err
	}
	if err := r.unlink(p); err != nil {
		return err
	}
	// The delete survives a crash before it is answered: the active
	// forgets it once every receiver has applied it.
	r.syncDir(path.Dir(p))
	return nil
}

// unlink removes the regular file at p, if there, without the fsync.
func (r *receiver) unlink(p string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := r.root.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return r.writeErr(p, err)
	}
	if !fi.Mode().IsRegular() {
		return ha.Errorf(ha.KindConflict, "%s is not a regular file here; remove it by hand", p)
	}
	if err := r.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return r.writeErr(p, err)
	}
	delete(r.sums, p)
	return nil
}

// setSource keeps the active's list of complete files, on disk too, and
// when it arrived (now).
func (r *receiver) setSource(s api.FolderSource, now time.Time) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sourceTaken && s.Epoch < r.source.Epoch {
		// A late one of an earlier active: the later active's stays.
		// (Only against one taken by this run: one read from disk may be
		// of a store whose epochs started over since.)
		return ha.Errorf(ha.KindConflict, "a list of complete files of epoch %d arrived after one of epoch %d; not taken", s.Epoch, r.source.Epoch)
	}
	tmp := path.Join(stateDir, "source.json.tmp")
	if err := r.root.WriteFile(tmp, b, 0o600); err != nil {
		return r.writeErr("source list", err)
	}
	if err := r.root.Rename(tmp, path.Join(stateDir, "source.json")); err != nil {
		return r.writeErr("source list", err)
	}
	r.source, r.sourceAt, r.sourceTaken = &s, now, true
	return nil
}

// lastSource returns the active's last list of complete files, if any.
func (r *receiver) lastSource() *api.FolderSource {
	src, _ := r.lastSourceAt()
	return src
}

// lastSourceAt is lastSource with when it arrived.
func (r *receiver) lastSourceAt() (*api.FolderSource, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.source, r.sourceAt
}

// writeErr turns a failed write into an answer: a full disk is the
// receiver's trouble (Unavailable: the sender marks it behind and retries),
// an escape from the folder is refused.
func (r *receiver) writeErr(p string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ha.Wrap(ha.KindUnavailable, err, "folder %s on %s: disk full writing %s; free space on %s", r.name, r.node, p, r.dir)
	case isEscape(err):
		return ha.Wrap(ha.KindInvalid, err, "folder %s: %s leads outside the folder (a symbolic link?); not written", r.name, p)
	}
	return ha.Wrap(ha.KindInternal, err, "folder %s on %s: write %s", r.name, r.node, p)
}

func isEscape(err error) bool {
	// os.Root's error for this is not exported.
	return strings.Contains(err.Error(), "path escapes from parent")
}
