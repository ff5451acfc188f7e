package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/web"
)

// The agent keeps its own log in data_dir/<node>/agent.log, besides writing
// it to stderr, so that the dashboard of any node can show and download the
// log of every node (GET /v1/logs). The file rotates to agent.log.1 at
// logFileMax bytes, so at most twice that is kept.
const (
	logFileName = "agent.log"
	logFileMax  = 8 << 20
)

// LogPath is the file the agent of node logs to.
func LogPath(cfg *config.Config, node string) string {
	return filepath.Join(LogDir(cfg, node), logFileName)
}

// TeeLog returns a writer that writes to w and to node's log file. If the
// file cannot be opened it says so on w and returns w alone: a log file is
// a convenience, never a reason not to run.
func TeeLog(cfg *config.Config, node string, w io.Writer) io.Writer {
	path := LogPath(cfg, node)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		fmt.Fprintf(w, "haven: no log file for the dashboard: %v\n", err)
		return w
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(w, "haven: no log file for the dashboard: %v\n", err)
		return w
	}
	st, _ := f.Stat()
	var size int64
	if st != nil {
		size = st.Size()
	}
	return io.MultiWriter(w, &rotatingFile{path: path, f: f, size: size})
}

// rotatingFile appends to a file and moves it aside when it grows too big.
// slog hands it one whole record per Write.
type rotatingFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64
}

func (r *rotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return len(p), nil // given up after a failed rotation; stderr still has it
	}
	if r.size+int64(len(p)) > logFileMax {
		_ = r.f.Close()
		_ = os.Rename(r.path, r.path+".1")
		f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			r.f = nil
			return len(p), nil
		}
		r.f, r.size = f, 0
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	if err != nil {
		return len(p), nil // the other writer (stderr) must not fail with it
	}
	return len(p), nil
}

// Logs returns the newest lines of this node's log file, or with lines <= 0
// everything kept (the rotated file, then the current one).
func (a *Agent) Logs(lines int) ([]byte, error) {
	path := LogPath(a.cfg, a.node.Name)
	cur, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ha.Errorf(ha.KindNotFound, "node %s keeps no log file (%s); its agent logs to stderr only", a.node.Name, path)
	}
	if err != nil {
		return nil, ha.Wrap(ha.KindInternal, err, "read the log")
	}
	old, _ := os.ReadFile(path + ".1")
	all := append(old, cur...)
	if lines <= 0 {
		return all, nil
	}
	return tailLines(all, lines), nil
}

// tailLines returns the last n lines of b.
func tailLines(b []byte, n int) []byte {
	i := len(b)
	if i > 0 && b[i-1] == '\n' {
		i--
	}
	for range n {
		j := bytes.LastIndexByte(b[:i], '\n')
		if j < 0 {
			return b
		}
		i = j
	}
	return b[i+1:]
}

// httpHandler is everything the agent serves on its API address: the API,
// GET /v1/logs and the dashboard under /ui/ (/ redirects there). The
// returned func ends the dashboard's live streams, for a prompt shutdown.
func (a *Agent) httpHandler(o api.Options) (http.Handler, func()) {
	dash := web.New(web.Options{
		Config:   a.cfg,
		Node:     a.node.Name,
		Source:   a,
		Operator: a,
		Logs:     a,
		Aliases:  a,
		Audit:    o.Audit,
		Log:      a.log.With("part", "dashboard"),
		Client:   a.peerClient().WithWho(""),
	})
	mux := http.NewServeMux()
	mux.Handle("/v1/logs", api.LogsHandler(a, o))
	if a.folders != nil {
		mux.Handle("/v1/folders/", api.FoldersHandler(a.folders, folderNodes(a.cfg), o))
	}
	mux.Handle("/ui/", dash)
	if !slices.Contains(o.RedirectPaths, "/") {
		mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusSeeOther))
	}
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusSeeOther))
	mux.Handle("/", api.Handler(a, a, o))
	return mux, dash.Close
}

var _ api.LogSource = (*Agent)(nil)
