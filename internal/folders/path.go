package folders

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// stateDir is the receiver's own directory at the top of every replicated
// folder: the last list of complete files of the active. It is never
// shipped, listed or written by a request.
const stateDir = ".haven-sync"

// partialPrefix starts the name of an upload's partial file, which is made
// in the directory of the file it becomes (as rsync does), so that the
// rename into place stays in one directory. A file so named is never
// shipped, listed or written by a request.
const partialPrefix = ".haven-partial-"

// isPartial reports whether the file at rel is an upload's partial file.
func isPartial(rel string) bool { return strings.HasPrefix(path.Base(rel), partialPrefix) }

// maxPathLen bounds a relative path (Linux's PATH_MAX).
const maxPathLen = 4096

// CleanPath checks a path received from another node and returns it in
// canonical form: relative, slash-separated, without "." or ".." elements,
// empty elements, NUL or control characters, and outside the receiver's
// state directory. Anything else is refused: the receiver writes only
// below its folder (and os.Root enforces that again when it writes, for
// symbolic links).
func CleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("empty path; send a path relative to the folder")
	case len(p) > maxPathLen:
		return "", fmt.Errorf("path is %d bytes; at most %d", len(p), maxPathLen)
	case !utf8.ValidString(p):
		return "", fmt.Errorf("path %q is not UTF-8", p)
	case strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("path %q is absolute; send it relative to the folder", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return "", fmt.Errorf("path %q has a control character or a backslash", p)
		}
	}
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "":
			return "", fmt.Errorf("path %q has an empty element", p)
		case ".", "..":
			return "", fmt.Errorf("path %q has a %q element; paths must stay inside the folder", p, el)
		}
		if len(el) > 255 {
			return "", fmt.Errorf("path %q has an element longer than 255 bytes", p)
		}
	}
	if first, _, _ := strings.Cut(p, "/"); first == stateDir {
		return "", fmt.Errorf("path %q is inside %s, haven's own directory", p, stateDir)
	}
	if path.Clean(p) != p {
		return "", fmt.Errorf("path %q is not in canonical form", p)
	}
	if isPartial(p) {
		return "", fmt.Errorf("path %q is named like haven's partial files (%s...); rename it", p, partialPrefix)
	}
	return p, nil
}

// Matcher decides which files of a folder are replicated: a file is when it
// matches an include pattern (or there are none) and no exclude pattern. A
// pattern without a slash matches a file's base name (or the name of any
// directory above it, for excludes: "tmp" excludes tmp/ at any depth); one
// with a slash matches the whole relative path (path.Match syntax).
type Matcher struct {
	Include []string
	Exclude []string
}

// Valid reports the first malformed pattern.
func (m Matcher) Valid() error {
	for _, p := range append(append([]string{}, m.Include...), m.Exclude...) {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	return nil
}

// Match reports whether the file at rel (a clean relative path) is replicated.
func (m Matcher) Match(rel string) bool {
	if rel == stateDir || strings.HasPrefix(rel, stateDir+"/") || isPartial(rel) {
		return false
	}
	for _, p := range m.Exclude {
		if matchAny(p, rel, true) {
			return false
		}
	}
	if len(m.Include) == 0 {
		return true
	}
	for _, p := range m.Include {
		if matchAny(p, rel, false) {
			return true
		}
	}
	return false
}

// SkipDir reports whether the directory at rel and everything below it is
// excluded (so that a scan need not enter it).
func (m Matcher) SkipDir(rel string) bool {
	if rel == stateDir {
		return true
	}
	for _, p := range m.Exclude {
		if !strings.Contains(p, "/") {
			if ok, _ := path.Match(p, path.Base(rel)); ok {
				return true
			}
		} else if ok, _ := path.Match(p, rel); ok {
			return true
		}
	}
	return false
}

func matchAny(p, rel string, dirs bool) bool {
	if strings.Contains(p, "/") {
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
		if dirs { // a pattern naming a directory excludes what is below it
			for d := path.Dir(rel); d != "."; d = path.Dir(d) {
				if ok, _ := path.Match(p, d); ok {
					return true
				}
			}
		}
		return false
	}
	if ok, _ := path.Match(p, path.Base(rel)); ok {
		return true
	}
	if dirs {
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			if ok, _ := path.Match(p, path.Base(d)); ok {
				return true
			}
		}
	}
	return false
}
