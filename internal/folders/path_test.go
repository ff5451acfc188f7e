package folders

import (
	"path"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	for _, p := range []string{"a", "a/b.txt", "rec/2026/12/06/x.guac", "..a", "a..", "a/.b", "é"} {
		if got, err := CleanPath(p); err != nil || got != p {
			t.Errorf("CleanPath(%q) = %q, %v; want it accepted", p, got, err)
		}
	}
	for _, p := range []string{"", "/etc/passwd", "../x", "a/../../x", "a/..", "..", ".", "./a", "a/./b", "a//b", "a/", "a\x00b", "a\nb", `a\b`, ".haven-sync/partial/x", ".haven-sync", ".haven-partial-x", "a/.haven-partial-0123", "\xff", strings.Repeat("a", 256), strings.Repeat("a/", 3000)} {
		if got, err := CleanPath(p); err == nil {
			t.Errorf("CleanPath(%q) = %q; want an error", p, got)
		}
	}
}

// FuzzCleanPath: whatever a peer sends, an accepted path stays inside the
// folder and outside haven's own directory.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"a", "../a", "a/../b", "/a", ".haven-sync/x", "a//b", "a/./b", "..", "x/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := CleanPath(p)
		if err != nil {
			return
		}
		joined := path.Join("/folder", got)
		if !strings.HasPrefix(joined, "/folder/") || joined == "/folder/"+stateDir || strings.HasPrefix(joined, "/folder/"+stateDir+"/") {
			t.Fatalf("CleanPath(%q) = %q escapes: %s", p, got, joined)
		}
		for _, el := range strings.Split(got, "/") {
			if el == ".." || el == "." || el == "" {
				t.Fatalf("CleanPath(%q) = %q has element %q", p, got, el)
			}
		}
	})
}

func TestMatcher(t *testing.T) {
	m := Matcher{Include: []string{"*.guac", "exports/*"}, Exclude: []string{"tmp", "*.part"}}
	for p, want := range map[string]bool{
		"a.guac":                         true,
		"x/y/a.guac":                     true,
		"exports/r.csv":                  true,
		"exports/r.part":                 false,
		"tmp/a.guac":                     false,
		"x/tmp/a.guac":                   false,
		"a.txt":                          false,
		".haven-sync/a":                  false,
		"x/.haven-partial-0123abcd.guac": false, // an upload's partial file
	} {
		if got := m.Match(p); got != want {
			t.Errorf("Match(%q) = %v, want %v", p, got, want)
		}
	}
	if (Matcher{}).Match(".haven-partial-0123") || (Matcher{}).Match("x/.haven-partial-0123.meta") {
		t.Error("a partial file must never be matched (shipped or listed)")
	}
	if !m.SkipDir("x/tmp") || m.SkipDir("x") {
		t.Error("SkipDir wrong")
	}
	if err := (Matcher{Exclude: []string{"["}}).Valid(); err == nil {
		t.Error("a malformed pattern must be refused")
	}
}
