package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

// TestPrintFoldersWarnsOfUnwatchedFolder: a folder the active cannot watch
// (inotify's limit) shows as a warning that says what to raise, next to
// the standbys' lag and a promotion's lost files.
func TestPrintFoldersWarnsOfUnwatchedFolder(t *testing.T) {
	var b bytes.Buffer
	printFolders(&b, api.Status{Nodes: []api.NodeView{{Name: "n1", Folders: []ha.FolderStats{
		{Folder: "rec", Error: "folder rec: the inotify watch limit is reached (...): raise it"},
		{Folder: "rec", Lost: 3},
		{Folder: "rec", Peer: "n2", Files: 1, Bytes: 10, OldestPath: "a", OldestMS: 5},
	}}}})
	out := b.String()
	for _, want := range []string{"rec on n1: WARNING folder rec: the inotify watch limit", "rec on n1: 3 files of the old active were lost", "rec n1 -> n2: shipping, lacks 1 files"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "0 files of the old active") {
		t.Errorf("a warning printed as 0 lost files:\n%s", out)
	}
}
