package config

import (
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Sync configures replicated folders (`sync:`): the active ships the files
// of each folder to every standby (package folders). No folders: off.
type Sync struct {
	MaxLag    time.Duration // a standby whose oldest missing file is older is behind
	Bandwidth int64         // bytes per second this node sends, all standbys together; 0: no bound
	Folders   []SyncFolder
	Line      int
}

// SyncFolder is one replicated folder.
type SyncFolder struct {
	Name    string // names it in the API; default: the path's base name
	Path    string // may use ${VAR}s of the node's env, so each node may keep it elsewhere
	Include []string
	Exclude []string
	Delete  string        // "keep" (default) or "mirror"
	Quiet   time.Duration // a file is shipped once unchanged this long
	Line    int
}

// Enabled reports whether any folder is replicated.
func (s Sync) Enabled() bool { return len(s.Folders) > 0 }

// Sync defaults.
const (
	DefaultSyncMaxLag = 10 * time.Second
	DefaultSyncQuiet  = 500 * time.Millisecond
)

var (
	syncKeys       = []string{"max_lag", "bandwidth", "quiet", "folders"}
	syncFolderKeys = []string{"name", "path", "include", "exclude", "delete", "quiet", "mode"}
	syncName       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
)

func (b *builder) sync(f fields) {
	n, ok := f["sync"]
	if !ok {
		return
	}
	s := Sync{MaxLag: DefaultSyncMaxLag, Line: n.Line}
	sf := b.mapping(n, "sync", syncKeys)
	if sf == nil {
		return
	}
	if v, ok := sf["max_lag"]; ok {
		if d, ok := b.duration(v, "sync.max_lag"); ok {
			if d <= 0 {
				b.add(v.Line, "sync.max_lag", "must be more than 0, e.g. 10s: how old a file a standby may lack before it counts as behind")
			} else {
				s.MaxLag = d
			}
		}
	}
	if v, ok := sf["bandwidth"]; ok {
		if x, ok := b.size(v, "sync.bandwidth", 0, 1<<40); ok {
			if x > 0 && x < 64<<10 {
				b.add(v.Line, "sync.bandwidth", "%d bytes a second is too little to ship anything; give at least 64KiB, or 0 for no bound", x)
			}
			s.Bandwidth = x
		}
	}
	quiet := DefaultSyncQuiet
	if v, ok := sf["quiet"]; ok {
		if d, ok := b.duration(v, "sync.quiet"); ok && d >= 0 {
			quiet = d
		} else if ok {
			b.add(v.Line, "sync.quiet", "must not be negative")
		}
	}
	v := b.required(sf, "sync", "folders", "list the folders to replicate, e.g. folders: [{path: /var/lib/guacamole/recordings}]")
	if v == nil {
		return
	}
	items, ok := b.sequence(v, "sync.folders", "folders")
	if !ok {
		return
	}
	if len(items) == 0 {
		b.add(v.Line, "sync.folders", "is empty; list at least one folder, or remove sync:")
	}
	for i, it := range items {
		field := indexField("sync.folders", i)
		ff := b.mapping(it, field, syncFolderKeys)
		if ff == nil {
			continue
		}
		fo := SyncFolder{Delete: "keep", Quiet: quiet, Line: it.Line}
		if pv := b.required(ff, field, "path", "give the folder's path, e.g. path: /var/lib/guacamole/recordings"); pv != nil {
			if p, ok := b.str(pv, field+".path"); ok {
				switch {
				case strings.TrimSpace(p) == "":
					b.add(pv.Line, field+".path", "is empty; give the folder's path")
				case strings.HasPrefix(p, "$"):
					fo.Path = p // a node's own path, from its env: checked below
				default:
					fo.Path = b.resolve(p)
					if fo.Path == "/" {
						b.add(pv.Line, field+".path", "is /; replicate a folder, not the whole file system")
					}
				}
			}
		}
		fo.Name = path.Base(filepath.ToSlash(fo.Path))
		if nv, ok := ff["name"]; ok {
			if s, ok := b.str(nv, field+".name"); ok {
				fo.Name = s
			}
		}
		if !syncName.MatchString(fo.Name) && fo.Path != "" {
			b.add(fo.Line, field+".name", "%q cannot name a folder; give name: with 1 to 63 letters, digits, '.', '_' or '-'", fo.Name)
		}
		for _, key := range []string{"include", "exclude"} {
			lv, ok := ff[key]
			if !ok {
				continue
			}
			list, ok := b.strList(lv, field+"."+key)
			if !ok {
				continue
			}
			for _, p := range list {
				if _, err := path.Match(p, ""); err != nil || p == "" {
					b.add(lv.Line, field+"."+key, "pattern %q is malformed; use shell patterns such as *.guac or exports/*.csv", p)
				}
			}
			if key == "include" {
				fo.Include = list
			} else {
				fo.Exclude = list
			}
		}
		if dv, ok := ff["delete"]; ok {
			if s, ok := b.oneOf(dv, field+".delete", "keep", "mirror"); ok {
				fo.Delete = s
			}
		}
		if mv, ok := ff["mode"]; ok {
			b.oneOf(mv, field+".mode", "active-to-standbys")
		}
		if qv, ok := ff["quiet"]; ok {
			if d, ok := b.duration(qv, field+".quiet"); ok && d >= 0 {
				fo.Quiet = d
			} else if ok {
				b.add(qv.Line, field+".quiet", "must not be negative")
			}
		}
		if fo.Quiet >= s.MaxLag {
			b.add(fo.Line, field+".quiet", "%s is not less than sync.max_lag %s: every file would count as behind before it is shipped; make quiet shorter or max_lag longer", fo.Quiet, s.MaxLag)
		}
		s.Folders = append(s.Folders, fo)
	}
	b.syncChecks(&s)
	b.c.Sync = s
}

// syncChecks are the rules across folders and sections.
func (b *builder) syncChecks(s *Sync) {
	c := b.c
	for i, fo := range s.Folders {
		field := indexField("sync.folders", i)
		for j := range i {
			o := s.Folders[j]
			if o.Name == fo.Name {
				b.add(fo.Line, field+".name", "folder name %q is used twice (the second is %s); give each folder its own name:", fo.Name, fo.Path)
			}
			if nested(o.Path, fo.Path) || nested(fo.Path, o.Path) {
				b.add(fo.Line, field+".path", "%s and %s overlap; replicate each folder once", o.Path, fo.Path)
			}
		}
		if fo.Path != "" && c.DataDir != "" && (nested(c.DataDir, fo.Path) || nested(fo.Path, c.DataDir)) {
			b.add(fo.Line, field+".path", "%s overlaps data_dir %s; keep replicated folders apart from haven's own data", fo.Path, c.DataDir)
		}
		for _, m := range bracedVar.FindAllStringSubmatch(fo.Path, -1) {
			var missing []string
			for _, n := range c.Nodes {
				if _, ok := c.Vars(n)[m[1]]; !ok && !n.Witness {
					missing = append(missing, n.Name)
				}
			}
			if len(missing) > 0 {
				b.add(fo.Line, field+".path", "${%s} is not defined for node %s; define it in every node's env (nodes[].env: {%[1]s: /path/on/that/node})", m[1], strings.Join(missing, ", "))
			}
		}
	}
	if len(s.Folders) == 0 {
		return
	}
	if c.Mode == "active-active" {
		b.add(s.Line, "sync", "needs one writer, and mode is active-active (every node writes); use active-passive or passive-backup, or a shared file system")
	}
	if !c.TLS.Enabled() && c.APIAuth.Token == "" {
		b.add(s.Line, "sync", "standbys take folder writes only from a node certificate (tls:) or with api.token, and this config has neither; add tls: (haven certs init) or api.token")
	}
}

// nested reports whether dir b is a or below it.
func nested(a, b string) bool {
	if a == "" || b == "" || strings.HasPrefix(a, "$") || strings.HasPrefix(b, "$") {
		return false
	}
	a, b = filepath.Clean(a), filepath.Clean(b)
	return a == b || strings.HasPrefix(b, strings.TrimSuffix(a, "/")+"/")
}

// FolderPath is where node keeps folder f.
func (c *Config) FolderPath(f SyncFolder, n Node) string {
	p := Expand(f.Path, c.Vars(n))
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(c.Path), p)
	}
	return filepath.Clean(p)
}
