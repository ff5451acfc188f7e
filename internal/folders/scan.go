package folders

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// scan lists the regular files of the folder at dir that m selects.
// Symbolic links, devices and the like are not replicated: a link could
// point outside the folder.
func scan(dir string, m Matcher) (map[string]Entry, error) {
	out, _, err := scanPartly(dir, m)
	return out, err
}

// scanPartly is scan that also says whether every directory could be read:
// a file below one that could not (permissions, EMFILE, EIO, an NFS hiccup)
// is absent from the list without being gone, so an incomplete list must
// not count as deletes.
func scanPartly(dir string, m Matcher) (out map[string]Entry, complete bool, err error) {
	out, complete = map[string]Entry{}, true
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone while walking
			}
			complete = false
			return nil // unreadable: skipped, seen again on the next scan
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if m.SkipDir(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !m.Match(rel) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				complete = false
			}
			return nil
		}
		out[rel] = entryOf(rel, info)
		return nil
	})
	return out, complete, err
}

// entryOf describes the file at rel from its information.
func entryOf(rel string, info os.FileInfo) Entry {
	return Entry{Path: rel, Size: info.Size(), MTime: info.ModTime().UnixNano(), Mode: uint32(info.Mode().Perm())}
}
