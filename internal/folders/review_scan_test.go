package folders

import (
	"testing"

	"github.com/haven-ha/haven/internal/clock"
)

// TestIncompleteScanDeletesNothing: with delete: mirror, a file missing from
// a scan that could not read every directory (permissions, EMFILE, EIO) is
// not counted as deleted; before, the active deleted it on every standby and
// shipped it again at the next good scan, and a failover in between lost it.
func TestIncompleteScanDeletesNothing(t *testing.T) {
	s := &Service{o: Options{Clock: clock.Real{}}}
	snd := newSender(s, Folder{Name: "rec", Mirror: true}, Matcher{}, 7)
	all := map[string]Entry{"a": {Path: "a", Size: 1, MTime: 1}, "sub/b": {Path: "sub/b", Size: 1, MTime: 1}}
	snd.merge(all, true)
	snd.merge(map[string]Entry{"a": all["a"]}, false) // sub/ unreadable this time
	if _, del, _, _ := snd.view(); del["sub/b"] {
		t.Fatal("a file below an unreadable directory counts as deleted")
	}
	snd.merge(map[string]Entry{"a": all["a"]}, true) // really gone
	if _, del, _, _ := snd.view(); !del["sub/b"] {
		t.Fatal("a file gone from a complete scan does not count as deleted")
	}
}
