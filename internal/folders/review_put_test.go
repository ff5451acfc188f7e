package folders

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// TestPutAfterLeftoverPartial: a receiver that restarted with part of a
// version on disk (an agent killed mid-upload, a write cut by a full disk, a
// sender with larger chunks before) still takes that version in one request
// (FolderPut). Before, begin resumed at the leftover offset, the chunk at 0
// was refused (Conflict) and the sender retried the same refused request
// for ever: the file never reached the standby.
func TestPutAfterLeftoverPartial(t *testing.T) {
	dir := t.TempDir()
	mk := func() *Service {
		s, err := New(Options{Node: "n2", Folders: []Folder{{Name: "rec", Path: dir}}, Clock: clock.Real{},
			Role:   func() (bool, ha.Epoch) { return false, 7 },
			Leader: func() ha.Leader { return ha.Leader{Node: "n1", Epoch: 7} }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	data := []byte("a small file that fits in one chunk, sent again after a restart")
	e := Entry{Path: "x/y.bin", Size: int64(len(data)), MTime: 1_700_000_000_000_000_000, Mode: 0o640}
	s := mk()
	r := s.recv["rec"]
	if _, err := r.begin(e); err != nil {
		t.Fatal(err)
	}
	if _, err := r.chunk(context.Background(), e, 0, ChunkSum(data[:20]), data[:20]); err != nil {
		t.Fatal(err)
	}
	s.Close() // the partial stays on disk, to resume

	s = mk()
	defer s.Close()
	e.SHA256 = sum(data)
	w := api.FolderWrite{From: "n1", Epoch: 7, File: e}
	if _, err := s.FolderPut(context.Background(), "rec", w, ChunkSum(data), data); err != nil {
		t.Fatalf("put of the whole file after a leftover partial: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "x/y.bin"))
	if err != nil || string(got) != string(data) {
		t.Fatalf("file after put: %q, %v", got, err)
	}
}

// TestLostReportSaysHowOldItsListIs: the promotion's report says how old
// the old active's list was; without it "promoted with all N complete
// files" read as complete when the list was minutes old (the old active
// sends none while it ships a batch or while this node is cut off).
func TestLostReportSaysHowOldItsListIs(t *testing.T) {
	var reasons []string
	s, err := New(Options{Node: "n2", Folders: []Folder{{Name: "rec", Path: t.TempDir()}}, Clock: clock.Real{},
		Role:   func() (bool, ha.Epoch) { return false, 7 },
		Leader: func() ha.Leader { return ha.Leader{Node: "n1", Epoch: 7} },
		Event:  func(ev ha.Event) { reasons = append(reasons, ev.Reason) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.FolderSource(context.Background(), "rec", api.FolderSource{From: "n1", Epoch: 7}); err != nil {
		t.Fatal(err)
	}
	s.reportLost(8)
	if len(reasons) != 1 || !strings.Contains(reasons[0], "its list of") || !strings.Contains(reasons[0], "not counted") {
		t.Fatalf("promotion report %q does not say how old the list is", reasons)
	}
}
