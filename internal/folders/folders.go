// Package folders replicates folders of the active node to every standby
// over the agent API: the active watches them, ships each new or changed
// file once it has been quiet, in checksummed resumable chunks that the
// receiver renames into place atomically, and a node promoted later reports
// the files of the old active it lacks (the folder's RPO).
//
// The decisions are pure (Plan, Behind, Lost, CleanPath, Matcher); the
// Service does the I/O: fsnotify on the active, os.Root on the receivers.
package folders

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// Folder is one replicated folder as this node has it.
type Folder struct {
	Name    string // the same on every node: it names the folder in the API
	Path    string // where it is on this node
	Include []string
	Exclude []string
	// Mirror: a file the active deletes is deleted on the receivers too
	// (delete: mirror). Otherwise receivers keep it (delete: keep).
	Mirror bool
	Quiet  time.Duration // a file is shipped once unchanged this long
}

// Peer is another node that receives the folders when this one is active.
type Peer struct {
	Name string
	Addr string // its agent API address
}

// Options configure a Service.
type Options struct {
	Node    string
	Folders []Folder
	Peers   []Peer
	// MaxLag: a receiver whose oldest missing file changed longer ago is
	// behind (an event, status and metrics say so).
	MaxLag time.Duration
	// Bandwidth bounds what this node sends, all receivers together, in
	// bytes per second; 0: no bound.
	Bandwidth int64
	ChunkSize int           // bytes per chunk; default 8 MiB (less under a low bandwidth bound)
	Rescan    time.Duration // full scan of every folder this often, besides fsnotify; default 30 s
	// PartialTimeout: a receiver removes an upload that no chunk touched
	// for this long (the sender died, was demoted, or the file went), and
	// such leftovers when it starts. Default 30 minutes.
	PartialTimeout time.Duration
	Client         *api.Client // to the other agents (mutual TLS)
	Clock          clock.Clock
	Log            *slog.Logger
	// Role reports whether this node is active, and at which epoch.
	Role func() (active bool, epoch ha.Epoch)
	// RoleChanged, when set, returns a channel closed when Role's answer
	// may have changed: Run then looks at Role on each close (and every
	// second) instead of every 100 ms.
	RoleChanged func() <-chan struct{}
	// Leader is who this node sees holding the active role: the only node
	// whose writes it takes.
	Leader func() ha.Leader
	// Event records an event in the cluster's history (may be nil).
	Event func(ha.Event)

	addWatch func(dir string) error // tests: instead of fsnotify's Add
}

const (
	defaultChunk  = 8 << 20
	defaultRescan = 30 * time.Second
	// defaultPartialTimeout: an upload untouched this long is abandoned.
	defaultPartialTimeout = 30 * time.Minute
	// sourceEvery bounds how often the active sends its list of complete
	// files to a receiver.
	sourceEvery = time.Second
)

// Service replicates the folders: a receiver of each while this node is
// a standby, a sender while it is active.
type Service struct {
	o     Options
	recv  map[string]*receiver
	limit *limiter
	bufs  *bufPool // the senders' chunk buffers
	m     *metrics
	// rbufs are the buffers chunks are received into (*[]byte; see
	// FolderBuffer): a chunk of megabytes allocated afresh each time
	// costs its zeroing, its page faults and garbage collections.
	rbufs sync.Pool

	mu   sync.Mutex
	lags map[[2]string]peerLag // by folder, peer
	lost map[string][]Entry    // by folder: what the last promotion of this node lacked
	// senders are the folders' senders while this node is active.
	senders map[string]*sender
	watch   map[string]string // by folder: why it cannot be watched
}

type peerLag struct {
	Lag
	err    string
	behind bool
}

// New checks the options and opens every folder (creating it if need be).
func New(o Options) (*Service, error) {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Rescan <= 0 {
		o.Rescan = defaultRescan
	}
	if o.PartialTimeout <= 0 {
		o.PartialTimeout = defaultPartialTimeout
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = defaultChunk
		if o.Bandwidth > 0 {
			o.ChunkSize = int(min(max(o.Bandwidth/4, 64<<10), defaultChunk))
		}
	}
	o.ChunkSize = min(o.ChunkSize, api.MaxFolderChunk)
	s := &Service{o: o, recv: map[string]*receiver{}, lags: map[[2]string]peerLag{}, lost: map[string][]Entry{}, watch: map[string]string{}, m: newMetrics()}
	if o.Bandwidth > 0 {
		s.limit = &limiter{clk: o.Clock, rate: o.Bandwidth}
	}
	s.bufs = newBufPool(o.ChunkSize, poolBuffers)
	for _, f := range o.Folders {
		m := Matcher{Include: f.Include, Exclude: f.Exclude}
		if err := m.Valid(); err != nil {
			s.Close()
			return nil, fmt.Errorf("folder %s: %w", f.Name, err)
		}
		r, err := newReceiver(f.Name, f.Path, o.Node, m)
		if err != nil {
			s.Close()
			return nil, err
		}
		r.now = o.Clock.Now
		if n := r.sweep(o.PartialTimeout, true); n > 0 {
			o.Log.Info("folder: removed abandoned partial uploads", "folder", f.Name, "files", n)
		}
		s.recv[f.Name] = r
	}
	return s, nil
}

// Close releases the folders.
func (s *Service) Close() {
	for _, r := range s.recv {
		r.close()
	}
}

// Collectors are the Service's Prometheus metrics.
func (s *Service) Collectors() []prometheus.Collector { return s.m.collectors() }

// Run sends the folders while this node is active, until ctx ends. It
// looks at the role when RoleChanged says it changed and every second, or
// every 100 ms without RoleChanged.
func (s *Service) Run(ctx context.Context) error {
	type sending struct {
		stop  context.CancelFunc
		done  chan struct{}
		epoch ha.Epoch
	}
	var cur *sending
	halt := func() {
		if cur != nil {
			cur.stop()
			<-cur.done
			cur = nil
			s.clearLags()
		}
	}
	defer halt()
	nextSweep := s.o.Clock.Now().Add(s.o.PartialTimeout / 10)
	for {
		if now := s.o.Clock.Now(); !now.Before(nextSweep) {
			nextSweep = now.Add(s.o.PartialTimeout / 10)
			for name, r := range s.recv {
				if n := r.sweep(s.o.PartialTimeout, false); n > 0 {
					s.o.Log.Info("folder: removed abandoned partial uploads", "folder", name, "files", n)
				}
			}
		}
		var changed <-chan struct{}
		look := 100 * time.Millisecond
		if s.o.RoleChanged != nil {
			changed, look = s.o.RoleChanged(), time.Second // taken before Role, so no change is missed
		}
		active, e := s.o.Role()
		switch {
		case active && (cur == nil || e != cur.epoch):
			halt()
			s.reportLost(e)
			sctx, stop := context.WithCancel(ctx)
			cur = &sending{stop: stop, done: make(chan struct{}), epoch: e}
			go func(c *sending) {
				defer close(c.done)
				s.send(sctx, c.epoch)
			}(cur)
		case !active && cur != nil:
			halt()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-s.o.Clock.After(look):
		}
	}
}

// send runs a sender of every folder to every peer at epoch until ctx ends.
func (s *Service) send(ctx context.Context, epoch ha.Epoch) {
	var wg sync.WaitGroup
	senders := map[string]*sender{}
	for _, f := range s.o.Folders {
		snd := newSender(s, f, s.recv[f.Name].match, epoch)
		senders[f.Name] = snd
		wg.Add(1)
		go func() { defer wg.Done(); snd.run(ctx) }()
	}
	s.mu.Lock()
	s.senders = senders
	s.mu.Unlock()
	wg.Wait()
	s.mu.Lock()
	s.senders = nil
	s.mu.Unlock()
}

// sender returns folder's sender while this node is active (else nil).
func (s *Service) sender(folder string) *sender {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.senders[folder]
}

// reportLost compares, on promotion, each folder with the old active's
// last list of complete files: what is missing here is lost.
func (s *Service) reportLost(epoch ha.Epoch) {
	for _, f := range s.o.Folders {
		r := s.recv[f.Name]
		src, at := r.lastSourceAt()
		if src == nil || src.From == s.o.Node {
			continue
		}
		have, err := scan(r.dir, r.match)
		if err != nil {
			s.o.Log.Error("folder: list after promotion", "folder", f.Name, "err", err)
			continue
		}
		lost := Lost(src.Entries, have)
		s.mu.Lock()
		s.lost[f.Name] = lost
		s.mu.Unlock()
		s.m.lost.WithLabelValues(f.Name).Set(float64(len(lost)))
		var names []string
		for i, e := range lost {
			if i == 10 {
				names = append(names, fmt.Sprintf("and %d more", len(lost)-10))
				break
			}
			names = append(names, e.Path+" ("+e.Note+")")
		}
		// The list is as old as the last one the old active could send
		// (at most once a second; not while this node was cut off from
		// it): files completed after it are not counted.
		asOf := fmt.Sprintf("its list of %s ago", s.o.Clock.Since(at).Round(time.Second))
		msg := fmt.Sprintf("folder %s: promoted with all %d complete files of %s (%s; files completed after it are not counted)", f.Name, len(src.Entries), src.From, asOf)
		if len(lost) > 0 {
			msg = fmt.Sprintf("folder %s: %d of %d complete files of %s are not here (lost, a lower bound: %s): %s", f.Name, len(lost), len(src.Entries), src.From, asOf, strings.Join(names, ", "))
			s.o.Log.Warn(msg)
		} else {
			s.o.Log.Info(msg)
		}
		s.event(ha.Event{Kind: "folder", Epoch: epoch, From: src.From, To: s.o.Node, Reason: msg})
	}
}

func (s *Service) event(ev ha.Event) {
	if s.o.Event != nil {
		s.o.Event(ev)
	}
}

// setLag records a receiver's lag, and an event when it falls behind
// max_lag or catches up.
func (s *Service) setLag(folder, peer string, lag Lag, err error) {
	behind := Behind(lag, s.o.MaxLag)
	pl := peerLag{Lag: lag, behind: behind}
	if err != nil {
		pl.err = err.Error()
	}
	s.mu.Lock()
	old, seen := s.lags[[2]string{folder, peer}]
	s.lags[[2]string{folder, peer}] = pl
	s.mu.Unlock()
	s.m.set(folder, peer, lag, behind)
	if seen && old.behind != behind {
		ev := ha.Event{Kind: "folder", From: s.o.Node, To: peer}
		if behind {
			ev.Reason = fmt.Sprintf("folder %s: %s is behind: %d files (%d bytes) missing, the oldest %s changed %s ago (max_lag %s)", folder, peer, lag.Files, lag.Bytes, lag.OldestPath, lag.Oldest.Round(time.Millisecond), s.o.MaxLag)
			if pl.err != "" {
				ev.Reason += "; last error: " + pl.err
			}
			s.o.Log.Warn(ev.Reason)
		} else {
			ev.Reason = fmt.Sprintf("folder %s: %s caught up", folder, peer)
			s.o.Log.Info(ev.Reason)
		}
		s.event(ev)
	}
}

// setWatch records why folder cannot be watched ("": it can): a change
// is logged, and recorded as an event when the trouble begins.
func (s *Service) setWatch(folder, trouble string) {
	s.mu.Lock()
	old := s.watch[folder]
	if trouble == "" {
		delete(s.watch, folder)
	} else {
		s.watch[folder] = trouble
	}
	s.mu.Unlock()
	s.m.watchOK.WithLabelValues(folder).Set(map[bool]float64{true: 1, false: 0}[trouble == ""])
	switch {
	case trouble == old:
	case trouble == "":
		s.o.Log.Info("folder: watching every directory again", "folder", folder)
	case old == "":
		s.o.Log.Warn(trouble)
		s.event(ha.Event{Kind: "folder", From: s.o.Node, Reason: trouble})
	}
}

func (s *Service) clearLags() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.lags {
		s.m.drop(k[0], k[1])
	}
	clear(s.lags)
	for f := range s.watch {
		s.m.watchOK.DeleteLabelValues(f)
	}
	clear(s.watch)
}

// Stats is what status shows: per folder and receiver, its lag (on the
// active), and what this node lacked when it was last promoted.
func (s *Service) Stats() []ha.FolderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ha.FolderStats
	for k, l := range s.lags {
		out = append(out, ha.FolderStats{Folder: k[0], Peer: k[1], Files: l.Files, Bytes: l.Bytes, OldestMS: l.Oldest.Milliseconds(), OldestPath: l.OldestPath, Behind: l.behind, Error: l.err})
	}
	for f, lost := range s.lost {
		if len(lost) > 0 {
			out = append(out, ha.FolderStats{Folder: f, Lost: len(lost)})
		}
	}
	for f, trouble := range s.watch {
		out = append(out, ha.FolderStats{Folder: f, Error: trouble})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Folder != out[j].Folder {
			return out[i].Folder < out[j].Folder
		}
		return out[i].Peer < out[j].Peer
	})
	return out
}

// Lost returns the files this node lacked of folder when it was last
// promoted (nil if none or not promoted).
func (s *Service) Lost(folder string) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost[folder]
}

// receiverFor checks that a write comes from the active and names a folder.
func (s *Service) receiverFor(folder string, from string, epoch ha.Epoch) (*receiver, error) {
	r, ok := s.recv[folder]
	if !ok {
		return nil, ha.Errorf(ha.KindNotFound, "no replicated folder %q on %s; every node needs the same sync: section", folder, s.o.Node)
	}
	if active, _ := s.o.Role(); active {
		return nil, ha.Errorf(ha.KindConflict, "%s is the active node: it sends folders and takes no writes", s.o.Node)
	}
	if l := s.o.Leader(); l.Node != from || l.Epoch != epoch || from == "" {
		return nil, ha.Errorf(ha.KindConflict, "%s sees %q active at epoch %d, not %q at %d: writes come only from the active; retry once the views agree", s.o.Node, l.Node, l.Epoch, from, epoch)
	}
	return r, nil
}

// FolderManifest lists what this node has of folder.
func (s *Service) FolderManifest(_ context.Context, folder string) (api.FolderManifest, error) {
	r, ok := s.recv[folder]
	if !ok {
		return api.FolderManifest{}, ha.Errorf(ha.KindNotFound, "no replicated folder %q on %s; every node needs the same sync: section", folder, s.o.Node)
	}
	es, err := r.manifest()
	if err != nil {
		return api.FolderManifest{}, ha.Wrap(ha.KindUnavailable, err, "manifest")
	}
	return api.FolderManifest{Folder: folder, Node: s.o.Node, Entries: es}, nil
}

// FolderBegin starts or resumes the upload of a file.
func (s *Service) FolderBegin(_ context.Context, folder string, w api.FolderWrite) (api.FolderOffset, error) {
	r, err := s.receiverFor(folder, w.From, w.Epoch)
	if err != nil {
		return api.FolderOffset{}, err
	}
	off, err := r.begin(w.File)
	return api.FolderOffset{Offset: off}, err
}

// FolderChunk takes one chunk of an upload.
func (s *Service) FolderChunk(ctx context.Context, folder string, w api.FolderWrite, off int64, sum string, data []byte) (api.FolderOffset, error) {
	r, err := s.receiverFor(folder, w.From, w.Epoch)
	if err != nil {
		return api.FolderOffset{}, err
	}
	n, err := r.chunk(ctx, w.File, off, sum, data)
	return api.FolderOffset{Offset: n}, err
}

// FolderCommit checks an upload and renames it into place.
func (s *Service) FolderCommit(_ context.Context, folder string, w api.FolderWrite) (api.FileEntry, error) {
	r, err := s.receiverFor(folder, w.From, w.Epoch)
	if err != nil {
		return api.FileEntry{}, err
	}
	return r.commit(w.File)
}

// FolderBuffer lends a buffer of n bytes to read a chunk into (api.FolderBuffers).
func (s *Service) FolderBuffer(n int) []byte {
	if n <= smallFile {
		return make([]byte, n)
	}
	if b, ok := s.rbufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n, max(n, s.o.ChunkSize))
}

// FolderBufferDone takes back a buffer FolderBuffer lent.
func (s *Service) FolderBufferDone(b []byte) {
	if cap(b) > smallFile {
		b = b[:cap(b)]
		s.rbufs.Put(&b)
	}
}

// FolderPut takes a file that fits in one chunk: begin, chunk and commit.
func (s *Service) FolderPut(ctx context.Context, folder string, w api.FolderWrite, sum string, data []byte) (api.FileEntry, error) {
	r, err := s.receiverFor(folder, w.From, w.Epoch)
	if err != nil {
		return api.FileEntry{}, err
	}
	if int64(len(data)) != w.File.Size {
		return api.FileEntry{}, ha.Errorf(ha.KindInvalid, "file %s: %d bytes sent, size says %d", w.File.Path, len(data), w.File.Size)
	}
	// From the first byte: a part of this version left by a restart or an
	// upload in chunks must not make the chunk at 0 a conflict for ever.
	if err := r.beginAfresh(w.File); err != nil {
		return api.FileEntry{}, err
	}
	if _, err := r.chunk(ctx, w.File, 0, sum, data); err != nil {
		r.drop(w.File.Path) // nothing resumes it: free its space now (a full disk)
		return api.FileEntry{}, err
	}
	return r.commit(w.File)
}

// FolderPutMany takes many small files in one request: each as FolderPut
// does, except that the directories are fsynced once, after the last
// file's rename and before the answer (not once per file).
func (s *Service) FolderPutMany(ctx context.Context, folder string, b api.FolderBatch, data [][]byte) ([]api.FolderFileResult, error) {
	r, err := s.receiverFor(folder, b.From, b.Epoch)
	if err != nil {
		return nil, err
	}
	out := make([]api.FolderFileResult, len(b.Files))
	dirs := map[string]bool{}
	for i, part := range b.Files {
		e, err := r.putUnsynced(ctx, part.File, part.Sum, data[i])
		if err != nil {
			out[i] = api.FolderFileResult{File: part.File, Status: api.StatusOf(err), Error: err.Error()}
			continue
		}
		out[i] = api.FolderFileResult{File: e}
		dirs[path.Dir(e.Path)] = true
	}
	for d := range dirs {
		r.syncDir(d) // the renames survive a crash
	}
	return out, nil
}

// putUnsynced is FolderPut's work on r, without the directory's fsync
// (commitUnsynced).
func (r *receiver) putUnsynced(ctx context.Context, e Entry, sum string, data []byte) (Entry, error) {
	if int64(len(data)) != e.Size {
		return Entry{}, ha.Errorf(ha.KindInvalid, "file %s: %d bytes sent, size says %d", e.Path, len(data), e.Size)
	}
	if err := r.beginAfresh(e); err != nil {
		return Entry{}, err
	}
	if _, err := r.chunk(ctx, e, 0, sum, data); err != nil {
		r.drop(e.Path) // nothing resumes it: free its space now (a full disk)
		return Entry{}, err
	}
	return r.commitUnsynced(e)
}

// FolderDelete removes a file the active deleted (delete: mirror).
func (s *Service) FolderDelete(_ context.Context, folder string, w api.FolderWrite) error {
	r, err := s.receiverFor(folder, w.From, w.Epoch)
	if err != nil {
		return err
	}
	return r.remove(w.File)
}

// FolderSource keeps the active's list of complete files.
func (s *Service) FolderSource(_ context.Context, folder string, src api.FolderSource) error {
	r, err := s.receiverFor(folder, src.From, src.Epoch)
	if err != nil {
		return err
	}
	return r.setSource(src, s.o.Clock.Now())
}

var (
	_ api.FolderReceiver = (*Service)(nil)
	_ api.FolderBatcher  = (*Service)(nil)
)
