package folders

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// sender is the active's side of one folder: what the folder holds (kept
// up to date by fsnotify and a periodic scan) and one loop per receiver.
type sender struct {
	s     *Service
	f     Folder
	match Matcher
	epoch ha.Epoch

	mu    sync.Mutex
	local map[string]Local
	// deleted: files that went away while this node was active (delete:
	// mirror), with the generation and time they went; forgotten once
	// every receiver is seen without them (clean), or after deletedTTL.
	deleted map[string]gone
	clean   map[string]uint64 // by receiver: the generation up to which it has applied every delete
	gen     uint64            // grows with every change
	changed chan struct{}     // closed and replaced on every change
	// snap is a copy of local and deleted as of snapGen, shared by the
	// receivers' loops (they only read it): a folder of 100,000 files is
	// copied once per change, not once per plan and receiver.
	snap    map[string]Local
	snapDel map[string]bool
	snapGen uint64

	// What the loops did, for tests and benchmarks.
	plans     atomic.Int64 // plans made, all receivers
	planNanos atomic.Int64 // time spent planning (view, Plan, the list's digest)
	sources   atomic.Int64 // lists of complete files sent
}

func newSender(s *Service, f Folder, m Matcher, epoch ha.Epoch) *sender {
	return &sender{s: s, f: f, match: m, epoch: epoch, local: map[string]Local{}, deleted: map[string]gone{}, clean: map[string]uint64{}, changed: make(chan struct{}), snapGen: ^uint64(0)}
}

func (snd *sender) clk() clock.Clock { return snd.s.o.Clock }

// run watches the folder and feeds every receiver until ctx ends.
func (snd *sender) run(ctx context.Context) {
	log := snd.s.o.Log.With("folder", snd.f.Name)
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		snd.s.setWatch(snd.f.Name, watchTrouble(snd.f, err, snd.s.o.Rescan))
	} else {
		defer w.Close()
	}
	snd.rescan(w)
	var wg sync.WaitGroup
	for _, p := range snd.s.o.Peers {
		wg.Add(1)
		go func() { defer wg.Done(); snd.feed(ctx, p) }()
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	tick := snd.clk().NewTicker(snd.s.o.Rescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case ev := <-events:
			snd.observe(w, ev.Name)
		case err := <-errs:
			log.Warn("folder: fsnotify", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				snd.rescan(w)
			}
		case <-tick.C():
			snd.rescan(w)
		}
	}
}

// rescan lists the whole folder again, watching every directory.
func (snd *sender) rescan(w *fsnotify.Watcher) {
	if w != nil {
		var failed error
		_ = filepath.WalkDir(snd.f.Path, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if rel, _ := filepath.Rel(snd.f.Path, p); rel != "." && snd.match.SkipDir(filepath.ToSlash(rel)) {
				return filepath.SkipDir
			}
			add := w.Add
			if snd.s.o.addWatch != nil {
				add = snd.s.o.addWatch
			}
			if err := add(p); err != nil && failed == nil && !errors.Is(err, fs.ErrNotExist) {
				failed = fmt.Errorf("watch %s: %w", p, err)
			}
			return nil
		})
		snd.s.setWatch(snd.f.Name, watchTrouble(snd.f, failed, snd.s.o.Rescan))
	}
	have, complete, err := scanPartly(snd.f.Path, snd.match)
	if err != nil {
		snd.s.o.Log.Warn("folder: scan", "folder", snd.f.Name, "err", err)
		return
	}
	if !complete {
		snd.s.o.Log.Warn("folder: scan could not read every directory; no file counts as deleted until a scan does", "folder", snd.f.Name)
	}
	snd.merge(have, complete)
}

// watchTrouble says what is wrong when the folder cannot be watched, and
// what to do ("": nothing is wrong). Without a watch a change is seen only
// by the next scan: files reach the standbys up to a scan interval late.
func watchTrouble(f Folder, err error, rescan time.Duration) string {
	if err == nil {
		return ""
	}
	limit := func(name string) string {
		b, _ := os.ReadFile("/proc/sys/fs/inotify/" + name)
		return strings.TrimSpace(string(b))
	}
	late := fmt.Sprintf("changes there are seen only by the scan every %s, so files reach the standbys that much later", rescan)
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Sprintf("folder %s: the inotify watch limit is reached (%v; fs.inotify.max_user_watches = %s): %s; raise it, e.g. sysctl -w fs.inotify.max_user_watches=1048576 and the same in /etc/sysctl.d/90-haven.conf", f.Name, err, limit("max_user_watches"), late)
	case errors.Is(err, syscall.EMFILE):
		return fmt.Sprintf("folder %s: no inotify instance left (%v; fs.inotify.max_user_instances = %s): %s; raise it, e.g. sysctl -w fs.inotify.max_user_instances=1024 and the same in /etc/sysctl.d/90-haven.conf", f.Name, err, limit("max_user_instances"), late)
	}
	return fmt.Sprintf("folder %s: cannot watch it (%v): %s", f.Name, err, late)
}

// merge takes a scan's list: new and changed files, and (only from a
// complete list) the files gone since.
func (snd *sender) merge(have map[string]Entry, complete bool) {
	snd.mu.Lock()
	defer snd.mu.Unlock()
	now := snd.clk().Now()
	n := 0
	for p := range snd.local {
		if _, ok := have[p]; !ok && complete {
			delete(snd.local, p)
			snd.gone(p, now)
			n++
		}
	}
	for p, e := range have {
		if snd.update(p, e, now) {
			n++
		}
	}
	for p, g := range snd.deleted {
		if now.Sub(g.at) >= deletedTTL {
			delete(snd.deleted, p) // a receiver away this long keeps the file
		}
	}
	if n > 0 {
		snd.bump()
	}
}

// gone records that p went away (for delete: mirror). Called with mu held,
// before the bump of its change.
func (snd *sender) gone(p string, now time.Time) {
	if snd.f.Mirror {
		snd.deleted[p] = gone{gen: snd.gen + 1, at: now}
	}
}

// gone is a file that went away while this node was active.
type gone struct {
	gen uint64 // the generation of its going
	at  time.Time
}

// deletedTTL bounds how long the active remembers a deleted file for a
// receiver that has not yet applied the delete (delete: mirror): one away
// longer keeps that file.
const deletedTTL = 24 * time.Hour

// applied records that peer has applied every delete up to generation gen,
// and forgets the deletes every receiver has applied.
func (snd *sender) applied(peer string, gen uint64) {
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if g, ok := snd.clean[peer]; ok && g >= gen {
		return
	}
	snd.clean[peer] = gen
	upTo := gen
	for _, p := range snd.s.o.Peers {
		g, ok := snd.clean[p.Name]
		if !ok {
			return
		}
		upTo = min(upTo, g)
	}
	for p, g := range snd.deleted {
		if g.gen <= upTo {
			delete(snd.deleted, p)
		}
	}
}

// observe handles an fsnotify event for the file or directory at name.
func (snd *sender) observe(w *fsnotify.Watcher, name string) {
	rel, err := filepath.Rel(snd.f.Path, name)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return
	}
	rel = filepath.ToSlash(rel)
	fi, err := os.Lstat(name)
	if err == nil && fi.IsDir() {
		if !snd.match.SkipDir(rel) {
			snd.rescan(w) // a new directory (or one moved in): watch and list it
		}
		return
	}
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if err != nil {
		// Gone: the file, or a directory with everything below it.
		n := 0
		for p := range snd.local {
			if p == rel || strings.HasPrefix(p, rel+"/") {
				delete(snd.local, p)
				snd.gone(p, snd.clk().Now())
				n++
			}
		}
		if n > 0 {
			snd.bump()
		}
		return
	}
	if !fi.Mode().IsRegular() || !snd.match.Match(rel) {
		return
	}
	if snd.update(rel, entryOf(rel, fi), snd.clk().Now()) {
		snd.bump()
	}
}

// update records e at p; it reports whether that is a change. Called with mu held.
func (snd *sender) update(p string, e Entry, now time.Time) bool {
	if l, ok := snd.local[p]; ok && l.Size == e.Size && l.MTime == e.MTime && l.Mode == e.Mode {
		return false
	}
	changed := time.Unix(0, e.MTime)
	if changed.After(now) {
		changed = now
	}
	snd.local[p] = Local{Entry: e, Changed: changed}
	delete(snd.deleted, p)
	return true
}

// bump wakes the receivers' loops. Called with mu held.
func (snd *sender) bump() {
	snd.gen++
	close(snd.changed)
	snd.changed = make(chan struct{})
}

// view returns a copy of what the loops plan from, made once per change
// and shared: the loops must not modify it.
func (snd *sender) view() (local map[string]Local, deleted map[string]bool, gen uint64, changed <-chan struct{}) {
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if snd.snapGen != snd.gen {
		snd.snap = make(map[string]Local, len(snd.local))
		for p, l := range snd.local {
			snd.snap[p] = l
		}
		snd.snapDel = make(map[string]bool, len(snd.deleted))
		for p := range snd.deleted {
			snd.snapDel[p] = true
		}
		snd.snapGen = snd.gen
	}
	return snd.snap, snd.snapDel, snd.gen, snd.changed
}

// setSum records the SHA-256 of a version of a file, once shipped.
func (snd *sender) setSum(e Entry) {
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if l, ok := snd.local[e.Path]; ok && l.Size == e.Size && l.MTime == e.MTime {
		l.SHA256 = e.SHA256
		snd.local[e.Path] = l
	}
}

// feed keeps one receiver up to date until ctx ends. Up to parallel
// uploads (a file, a batch of small files, a delete) run at once, and the
// loop plans again while they run — on a change, when one ends, when a
// file becomes quiet — and starts the next ones as slots free up: a slow
// upload (a big file's fsync on a busy disk) holds back neither the files
// that become complete meanwhile, nor the receiver's lag and its "behind"
// event, nor the list of complete files a promotion's RPO report uses.
func (snd *sender) feed(ctx context.Context, peer Peer) {
	log := snd.s.o.Log.With("folder", snd.f.Name, "peer", peer.Name)
	c := snd.s.o.Client
	var (
		have     map[string]Entry // what the receiver holds; nil: ask it
		seen     map[string]Entry // what it held when last known: its lag while it does not answer
		backoff  = 200 * time.Millisecond
		lastErr  error
		srcAt    time.Time
		srcSet   = readySet{count: -1}
		nextPlan time.Time // plans are spaced by ten times what one costs
		crc      = true    // chunks carry their CRC-32C (set from each manifest)
		batch    = false   // the receiver takes small files in batches (set from each manifest)

		queue   [][]Step                         // the last plan's jobs not started yet
		busy    = map[string]bool{}              // the paths of the jobs running
		running int                              // jobs running, the list's sending too
		ended   = make(chan outcome, parallel+1) // each job sends once: never blocks
		listing bool                             // the list of complete files is being sent
		errs    []error                          // of the jobs ended since the receiver was last asked
		dirty   = true                           // plan again once nextPlan has come
		changed <-chan struct{}                  // closed on the folder's next change (nil: seen)
		idle    time.Time                        // with nothing else happening, plan again then
	)
	pause := func(d time.Duration) bool {
		t := snd.clk().NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C():
		}
		return true
	}
	failed := func(err error) {
		if ctx.Err() != nil {
			return
		}
		if lastErr == nil || lastErr.Error() != err.Error() {
			log.Warn("folder: receiver", "err", err)
		}
		lastErr = err
		if refusedWrite(err) {
			return // it wrote nothing: what it holds is as known
		}
		if have != nil {
			seen = have
		}
		have = nil // ask it again: the failure may have left it anywhere
	}
	// take records what a job did: the receiver's view, errors.
	take := func(o outcome) {
		running--
		dirty = true
		if l := o.list; l != nil {
			listing = false
			if l.err != nil {
				errs = append(errs, l.err)
			} else {
				snd.sources.Add(1)
				srcSet, srcAt = l.ready, l.at
			}
			return
		}
		ok := false
		for i, st := range o.steps {
			delete(busy, st.File.Path)
			switch err := o.errs[i]; {
			case errors.Is(err, errChanged): // seen again when it is quiet
			case err != nil:
				errs = append(errs, err)
			case have == nil:
			case st.Op == OpDelete:
				delete(have, st.File.Path)
				ok = true
			default:
				have[o.entries[i].Path] = o.entries[i]
				ok = true
			}
		}
		if ok && len(errs) == 0 {
			lastErr = nil
			backoff = 200 * time.Millisecond
		}
	}
	start := func(job []Step) {
		running++
		for _, st := range job {
			busy[st.File.Path] = true
		}
		crc := crc
		go func() {
			o := outcome{steps: job, entries: make([]Entry, len(job)), errs: make([]error, len(job))}
			done := func(st Step, e Entry, err error) {
				if err == nil && st.Op == OpShip {
					snd.setSum(e)
					snd.s.m.shipped(snd.f.Name, peer.Name, e.Size)
				}
				for i := range job {
					if job[i].File.Path == st.File.Path {
						o.entries[i], o.errs[i] = e, err
					}
				}
			}
			if len(job) > 1 {
				snd.shipMany(ctx, peer, job, crc, done)
			} else if st := job[0]; st.Op == OpDelete {
				done(st, Entry{}, c.FolderDelete(ctx, peer.Addr, snd.f.Name, api.FolderWrite{From: snd.s.o.Node, Epoch: snd.epoch, File: st.File.Entry}))
			} else {
				e, err := snd.ship(ctx, peer, st.File.Entry, crc)
				done(st, e, err)
			}
			ended <- o
		}()
	}
	for {
		for more := true; more; {
			select {
			case o := <-ended:
				take(o)
			default:
				more = false
			}
		}
		if ctx.Err() != nil {
			for running > 0 {
				take(<-ended)
			}
			return
		}
		if len(errs) > 0 {
			// Let the other jobs end, then ask the receiver again.
			for running > 0 {
				take(<-ended)
			}
			failed(errs[0])
			if refusedWrite(errs[0]) {
				backoff = min(backoff, maxRefusedBackoff)
			}
			errs, queue = nil, nil
			if !pause(backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			if refusedWrite(lastErr) {
				backoff = min(backoff, maxRefusedBackoff)
			}
			dirty = true
			continue
		}
		now := snd.clk().Now()
		if have == nil { // no job runs
			m, err := c.FolderManifest(ctx, peer.Addr, snd.f.Name)
			if err != nil {
				failed(err)
				local, _, _, _ := snd.view()
				_, lag, _ := Plan(local, seen, snd.clk().Now(), snd.f.Quiet, nil)
				snd.s.setLag(snd.f.Name, peer.Name, lag, lastErr)
				if !pause(backoff) {
					return
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			// Over TLS to a receiver that says so, chunks go without a
			// CRC-32C: TLS authenticates every record (AEAD) already.
			crc = c.Scheme() != "https" || !m.ChunkSumOptional
			batch = m.Batch
			have = make(map[string]Entry, len(m.Entries))
			for _, e := range m.Entries {
				have[e.Path] = e
			}
			dirty, nextPlan = true, time.Time{}
			now = snd.clk().Now() // the manifest's time is the receiver's, not the plan's
		}
		if dirty && !now.Before(nextPlan) {
			start := now
			local, deleted, gen, ch := snd.view()
			now = snd.clk().Now()
			var del map[string]bool
			if snd.f.Mirror {
				del = deleted
			}
			steps, lag, wait := Plan(local, have, now, snd.f.Quiet, del)
			snd.s.setLag(snd.f.Name, peer.Name, lag, lastErr)
			// Deletes come first, running ones too; a path deleted here
			// while its upload runs is not in have yet, so no plan has its
			// delete: the receiver is clean only once that upload ended
			// (its outcome in have, the delete planned next time).
			if (len(steps) == 0 || steps[0].Op != OpDelete) && !uploading(busy, deleted) {
				snd.applied(peer.Name, gen)
			}
			// The list of complete files, for the RPO report of a later
			// promotion: sent when that set changed (a file being written
			// does not change it), at most once every sourceEvery.
			ready := readyOf(local, now, snd.f.Quiet)
			cost := snd.clk().Since(start)
			snd.plans.Add(1)
			snd.planNanos.Add(int64(cost))
			nextPlan = start.Add(min(max(10*cost, minReplan), maxReplan))
			dirty, changed = false, ch
			// It is sent beside the uploads, not by this loop: a receiver
			// slow to take it (frozen, a stuck disk) holds back neither
			// the uploads nor the lag.
			if ready != srcSet && now.Sub(srcAt) >= sourceEvery && !listing {
				listing = true
				running++
				src := api.FolderSource{From: snd.s.o.Node, Epoch: snd.epoch, Entries: readyList(local, now, snd.f.Quiet)}
				go func(ready readySet, at time.Time) {
					err := c.FolderSource(ctx, peer.Addr, snd.f.Name, src)
					ended <- outcome{list: &listSent{ready: ready, at: at, err: err}}
				}(ready, now)
			}
			todo := steps[:0:0]
			for _, st := range steps {
				if !busy[st.File.Path] {
					todo = append(todo, st)
				}
			}
			queue = jobsOf(todo, batch)
			if len(steps) == 0 && running == 0 {
				lastErr = nil
				backoff = 200 * time.Millisecond
			}
			// With nothing else happening, plan again when a file becomes
			// quiet, to refresh a lag's age (and say "behind" once it
			// passes max_lag), or to send the list of complete files once
			// sourceEvery has passed.
			d := time.Minute
			if lag.Files > 0 {
				d = time.Second
				if ml := snd.s.o.MaxLag; ml > 0 && lag.Oldest <= ml {
					d = min(d, ml-lag.Oldest+time.Millisecond)
				}
			}
			if ready != srcSet && !listing { // else its end wakes the loop
				d = min(d, max(sourceEvery-now.Sub(srcAt), time.Millisecond))
			}
			if wait > 0 && wait < d {
				d = wait + time.Millisecond
			}
			idle = now.Add(d)
		}
		for len(queue) > 0 && running-b2i(listing) < parallel {
			start(queue[0])
			queue = queue[1:]
		}
		// Wait for a job to end, a change, or the next plan.
		at := idle
		if dirty {
			at = nextPlan
		}
		d := at.Sub(snd.clk().Now())
		if d <= 0 {
			dirty = true
			continue
		}
		t := snd.clk().NewTimer(d)
		select {
		case <-ctx.Done():
		case o := <-ended:
			take(o)
		case <-changed:
			changed, dirty = nil, true
		case <-t.C():
			dirty = true
		}
		t.Stop()
	}
}

// uploading reports whether one of the paths of the jobs running (busy)
// is deleted here: its upload may still land on the receiver.
func uploading(busy, deleted map[string]bool) bool {
	for p := range busy {
		if deleted[p] {
			return true
		}
	}
	return false
}

// refusedWrite reports whether err is a receiver's answer that it took
// no write (Conflict): it does not see this node as the active at this
// epoch yet (an agent just restarted whose member is catching up with the
// store, a promotion it has not seen yet), or an upload it does not hold.
// Nothing changed there: it is asked again soon (maxRefusedBackoff) with
// what it holds as known, not after a backoff of up to 5 s that doubled
// with each refusal: once it sees the active the files follow at once.
func refusedWrite(err error) bool {
	var ce *api.CallError
	return errors.As(err, &ce) && ce.Status == http.StatusConflict
}

// maxRefusedBackoff bounds the wait before a receiver that refused a write
// (refusedWrite) is asked again; each try costs a plan and, when the set
// of complete files changed, its list (100,000 files: about 14 MB).
const maxRefusedBackoff = time.Second

// outcome is what one of feed's jobs did: per step, the receiver's entry
// or an error; or (list) how the sending of the list of complete files went.
type outcome struct {
	steps   []Step
	entries []Entry
	errs    []error
	list    *listSent
}

// listSent is how one sending of the list of complete files went: the set
// it named, as of when, and its error.
type listSent struct {
	ready readySet
	at    time.Time
	err   error
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readySet identifies a set of complete files: their number and a sum of
// their paths', sizes' and modification times' hashes (independent of order).
type readySet struct {
	count int
	sum   uint64
}

func readyOf(local map[string]Local, now time.Time, quiet time.Duration) readySet {
	var r readySet
	for p, l := range local {
		if now.Sub(l.Changed) >= quiet {
			// FNV-1a, inline: no allocation per file.
			h := uint64(14695981039346656037)
			for i := 0; i < len(p); i++ {
				h = (h ^ uint64(p[i])) * 1099511628211
			}
			for _, v := range [2]uint64{uint64(l.Size), uint64(l.MTime)} {
				for i := 0; i < 8; i++ {
					h = (h ^ (v >> (8 * i) & 0xff)) * 1099511628211
				}
			}
			r.count++
			r.sum += h
		}
	}
	return r
}

func readyList(local map[string]Local, now time.Time, quiet time.Duration) []Entry {
	out := make([]Entry, 0, len(local))
	for _, l := range local {
		if now.Sub(l.Changed) >= quiet {
			out = append(out, l.Entry)
		}
	}
	return out
}

// A receiver's loop plans again at most every ten times what its last plan
// cost (copying the folder's list, planning, the complete files' digest),
// within these bounds: a folder of 100,000 files (about 100 ms a plan)
// is planned about once a second however often its files change, a small
// one every 20 ms.
const (
	minReplan = 20 * time.Millisecond
	maxReplan = time.Second
)

// parallel is how many files a sender ships to one receiver at a time.
const parallel = 4

// A batch (PUT files) holds up to batchFiles files of up to smallFile
// bytes each, batchBytes in all: one request, and one fsync of their
// directory, instead of one each.
const (
	batchFiles = 64
	batchBytes = 1 << 20
)

// jobsOf groups a plan's steps into what one of the parallel senders does
// at a time: a delete, a file, or (batch: the receiver takes them) a batch
// of small files, in the plan's order.
func jobsOf(steps []Step, batch bool) [][]Step {
	jobs := make([][]Step, 0, len(steps))
	var cur []Step
	var size int64
	flush := func() {
		if len(cur) > 0 {
			jobs = append(jobs, cur)
		}
		cur, size = nil, 0
	}
	for _, st := range steps {
		if !batch || st.Op != OpShip || st.File.Size > smallFile {
			jobs = append(jobs, []Step{st})
			continue
		}
		if len(cur) == batchFiles || size+st.File.Size > batchBytes {
			flush()
		}
		cur = append(cur, st)
		size += st.File.Size
	}
	flush()
	return jobs
}

// shipMany sends small files in one request (PUT files) and tells done
// what became of each. A file that changed while it was read is left out
// (errChanged); one the receiver found corrupt (Invalid: its CRC-32C, on
// a link without TLS) is sent again on its own.
func (snd *sender) shipMany(ctx context.Context, peer Peer, job []Step, crc bool, done func(Step, Entry, error)) {
	b := api.FolderBatch{From: snd.s.o.Node, Epoch: snd.epoch}
	var (
		data  [][]byte
		sent  []Step
		total int
	)
	for _, st := range job {
		d, sum, err := snd.readSmall(st.File.Entry)
		if err != nil {
			done(st, Entry{}, err)
			continue
		}
		e := st.File.Entry
		b.Files = append(b.Files, api.FolderPart{File: Entry{Path: e.Path, Size: e.Size, MTime: e.MTime, Mode: e.Mode, SHA256: sum}, Sum: chunkSum(d, crc)})
		data = append(data, d)
		sent = append(sent, st)
		total += len(d)
	}
	if len(sent) == 0 {
		return
	}
	if err := snd.s.limit.wait(ctx, total); err != nil {
		for _, st := range sent {
			done(st, Entry{}, err)
		}
		return
	}
	res, err := snd.s.o.Client.FolderPutMany(ctx, peer.Addr, snd.f.Name, b, data)
	for i, st := range sent {
		switch {
		case err != nil:
			done(st, Entry{}, fmt.Errorf("send %s: %w", st.File.Path, err))
		case res[i].Status == 0:
			done(st, res[i].File, nil)
		case ha.KindOf(res[i].Err()) == ha.KindInvalid && crc:
			e, err := snd.ship(ctx, peer, st.File.Entry, crc) // corrupt on the way: again, alone
			done(st, e, err)
		default:
			done(st, Entry{}, fmt.Errorf("send %s: %w", st.File.Path, res[i].Err()))
		}
	}
}

// readSmall reads a file of up to smallFile bytes, the version e, and its
// SHA-256 (errChanged: it changed or went).
func (snd *sender) readSmall(e Entry) ([]byte, string, error) {
	f, err := os.Open(filepath.Join(snd.f.Path, filepath.FromSlash(e.Path)))
	if err != nil {
		return nil, "", errChanged
	}
	defer f.Close()
	data := make([]byte, e.Size)
	if !sameFile(f, e) {
		return nil, "", errChanged
	}
	if _, err := io.ReadFull(f, data); err != nil || !sameFile(f, e) {
		return nil, "", errChanged
	}
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:]), nil
}

// chunkSum is data's ChunkSum when crc, else "" (none: over TLS).
func chunkSum(data []byte, crc bool) string {
	if !crc {
		return ""
	}
	return ChunkSum(data)
}

// errChanged: the file changed (or went) while it was read; it is shipped
// once it is quiet again.
var errChanged = errors.New("file changed while it was sent")

// ship sends one file to peer: begin (the receiver says how much of it it
// has), the rest in chunks (each with its CRC-32C when crc, else over TLS
// without), then commit with the SHA-256 of the whole file, which the
// receiver checks (a resumed upload) before it renames the file into place.
func (snd *sender) ship(ctx context.Context, peer Peer, e Entry, crc bool) (Entry, error) {
	c := snd.s.o.Client
	w := api.FolderWrite{From: snd.s.o.Node, Epoch: snd.epoch, File: Entry{Path: e.Path, Size: e.Size, MTime: e.MTime, Mode: e.Mode}}
	f, err := os.Open(filepath.Join(snd.f.Path, filepath.FromSlash(e.Path)))
	if err != nil {
		return Entry{}, errChanged
	}
	defer f.Close()
	if !sameFile(f, e) {
		return Entry{}, errChanged
	}
	bufs := snd.s.bufs
	if e.Size <= int64(snd.s.o.ChunkSize) {
		// One request: the file fits in a chunk.
		var data []byte
		if e.Size > smallFile {
			buf, err := bufs.get(ctx)
			if err != nil {
				return Entry{}, err
			}
			defer bufs.put(buf)
			data = buf[:e.Size]
		} else {
			data = make([]byte, e.Size)
		}
		if _, err := io.ReadFull(f, data); err != nil || !sameFile(f, e) {
			return Entry{}, errChanged
		}
		sum := sha256.Sum256(data)
		w.File.SHA256 = hex.EncodeToString(sum[:])
		if err := snd.s.limit.wait(ctx, len(data)); err != nil {
			return Entry{}, err
		}
		var got Entry
		for try := 0; ; try++ {
			got, err = c.FolderPut(ctx, peer.Addr, snd.f.Name, w, chunkSum(data, crc), data)
			if err == nil || try == 2 || ha.KindOf(err) != ha.KindInvalid {
				break // a corrupt body (Invalid) is sent again, twice at most
			}
		}
		if err != nil {
			return Entry{}, fmt.Errorf("send %s: %w", e.Path, err)
		}
		return got, nil
	}
	o, err := c.FolderBegin(ctx, peer.Addr, snd.f.Name, w)
	if err != nil {
		return Entry{}, err
	}
	h := sha256.New()
	off := o.Offset
	if off > e.Size {
		off = 0
	}
	if off > 0 {
		if _, err := io.CopyN(h, f, off); err != nil {
			return Entry{}, errChanged
		}
	}
	// A reader reads and hashes the next chunks while one is on the wire,
	// in buffers of the Service's pool (at most perShip of them at once).
	type piece struct {
		off  int64
		data []byte
		sum  string
		err  error
	}
	mine := make(chan struct{}, perShip)
	pieces := make(chan piece, perShip-1)
	rctx, stopReader := context.WithCancel(ctx)
	defer func() {
		stopReader()
		for pc := range pieces { // the reader's unsent pieces go back to the pool
			if pc.data != nil {
				bufs.put(pc.data)
			}
		}
	}()
	go func() {
		defer close(pieces)
		for pos := off; pos < e.Size; {
			select {
			case mine <- struct{}{}:
			case <-rctx.Done():
				return
			}
			buf, err := bufs.get(rctx)
			if err != nil {
				return
			}
			n, err := io.ReadFull(f, buf[:min(int64(len(buf)), e.Size-pos)])
			if err != nil {
				bufs.put(buf)
				select {
				case pieces <- piece{err: errChanged}:
				case <-rctx.Done():
				}
				return
			}
			h.Write(buf[:n])
			select {
			case pieces <- piece{off: pos, data: buf[:n], sum: chunkSum(buf[:n], crc)}:
			case <-rctx.Done():
				bufs.put(buf)
				return
			}
			pos += int64(n)
		}
	}()
	// Up to chunksInFlight chunks on the wire at once: the next one's
	// transfer overlaps the receiver's write of the one before (the
	// receiver writes them in order: one ahead waits for its turn).
	sctx, stopSends := context.WithCancel(ctx)
	defer stopSends()
	var (
		swg     sync.WaitGroup
		smu     sync.Mutex
		sendErr error
		sent    int64 = off // bytes acknowledged, in order
		acked         = map[int64]int64{}
	)
	fail := func() error {
		smu.Lock()
		defer smu.Unlock()
		return sendErr
	}
	onWire := make(chan struct{}, chunksInFlight)
	for pc := range pieces {
		if pc.err != nil {
			smu.Lock()
			if sendErr == nil {
				sendErr = pc.err
			}
			smu.Unlock()
			break
		}
		err := snd.s.limit.wait(ctx, len(pc.data))
		if err == nil {
			select {
			case onWire <- struct{}{}:
			case <-sctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil {
			err = fail()
		}
		if err != nil {
			bufs.put(pc.data)
			<-mine
			if fail() == nil && err != nil {
				smu.Lock()
				sendErr = err
				smu.Unlock()
			}
			break
		}
		swg.Add(1)
		go func(pc piece) {
			defer swg.Done()
			var err error
			for try := 0; ; try++ {
				_, err = c.FolderChunk(sctx, peer.Addr, snd.f.Name, w, pc.off, pc.sum, pc.data)
				if err == nil || try == 2 || ha.KindOf(err) != ha.KindInvalid {
					break // a corrupt chunk (Invalid) is sent again, twice at most
				}
			}
			bufs.put(pc.data)
			<-mine
			<-onWire
			smu.Lock()
			defer smu.Unlock()
			if err != nil {
				if sendErr == nil {
					sendErr = fmt.Errorf("send %s: %w", e.Path, err)
				}
				stopSends() // the chunks after it wait in vain
				return
			}
			acked[pc.off] = int64(len(pc.data))
			for n, ok := acked[sent]; ok; n, ok = acked[sent] {
				delete(acked, sent)
				sent += n
			}
		}(pc)
	}
	swg.Wait()
	if err := fail(); err != nil {
		return Entry{}, err
	}
	off = sent
	if off != e.Size {
		return Entry{}, errChanged
	}
	if !sameFile(f, e) {
		return Entry{}, errChanged
	}
	w.File.SHA256 = hex.EncodeToString(h.Sum(nil))
	got, err := c.FolderCommit(ctx, peer.Addr, snd.f.Name, w)
	if err != nil {
		return Entry{}, fmt.Errorf("commit %s: %w", e.Path, err)
	}
	return got, nil
}

// smallFile: a file up to this size is read into a buffer of its own;
// larger ones use the Service's pool.
const smallFile = 64 << 10

// perShip bounds the pool's buffers one file's upload holds: those on the
// wire, the next one read and hashed meanwhile.
const perShip = chunksInFlight + 1

// chunksInFlight is how many chunks of one file are on the wire at once
// (each on its own connection): the receiver writes one while the next
// arrives, instead of the sender waiting for each answer before it sends.
const chunksInFlight = 2

// poolBuffers is how many chunk buffers the Service's pool lends at once,
// all folders, receivers and files together (8 MiB chunks: 64 MiB).
const poolBuffers = 8

// bufPool lends the chunk buffers of a Service's senders: at most n exist
// at once, whatever the number of folders, receivers and files shipped.
type bufPool struct {
	size   int
	tokens chan struct{} // one per buffer lent
	free   chan []byte
	made   atomic.Int64 // buffers allocated, ever
	out    atomic.Int64 // lent now
	most   atomic.Int64 // the most lent at once
}

func newBufPool(size, n int) *bufPool {
	return &bufPool{size: size, tokens: make(chan struct{}, n), free: make(chan []byte, n)}
}

// get lends a buffer of p.size bytes, waiting for one to be free.
func (p *bufPool) get(ctx context.Context) ([]byte, error) {
	select {
	case p.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out := p.out.Add(1)
	for {
		m := p.most.Load()
		if out <= m || p.most.CompareAndSwap(m, out) {
			break
		}
	}
	select {
	case b := <-p.free:
		return b, nil
	default:
		p.made.Add(1)
		return make([]byte, p.size), nil
	}
}

// put gives back a buffer get lent.
func (p *bufPool) put(b []byte) {
	p.out.Add(-1)
	select {
	case p.free <- b[:cap(b)]:
	default:
	}
	<-p.tokens
}

// sameFile reports whether the open file is still the version e.
func sameFile(f *os.File, e Entry) bool {
	fi, err := f.Stat()
	return err == nil && fi.Size() == e.Size && fi.ModTime().UnixNano() == e.MTime
}

// limiter spaces out chunks so that the node sends at most rate bytes a
// second, all receivers together.
type limiter struct {
	clk  clock.Clock
	rate int64
	mu   sync.Mutex
	next time.Time
}

func (l *limiter) wait(ctx context.Context, n int) error {
	if l == nil || l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	now := l.clk.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(time.Duration(int64(n) * int64(time.Second) / l.rate))
	l.mu.Unlock()
	if d := at.Sub(now); d > 0 && !clock.SleepCtx(ctx, l.clk, d) {
		return ctx.Err()
	}
	return nil
}
