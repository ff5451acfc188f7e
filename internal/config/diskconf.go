package config

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var diskKeys = []string{"path", "min_free_bytes", "min_free_percent"}

func (b *builder) diskCheck(n *yaml.Node, path string) *DiskCheck {
	f := b.mapping(n, path, diskKeys)
	d := &DiskCheck{}
	if v := b.required(f, path, "path", "give a path on the file system to watch, e.g. path: /var/lib/guacamole/recordings"); v != nil {
		if s, ok := b.str(v, path+".path"); ok {
			switch {
			case strings.TrimSpace(s) == "":
				b.add(v.Line, path+".path", "is empty; give a path on the file system to watch")
			case strings.HasPrefix(s, "$"):
				d.Path = s
			default:
				d.Path = b.resolve(s)
			}
		}
	}
	if v, ok := f["min_free_bytes"]; ok {
		if x, ok := b.size(v, path+".min_free_bytes", 0, 1<<60); ok {
			d.MinFreeBytes = x
		}
	}
	if v, ok := f["min_free_percent"]; ok {
		if s, ok := b.str(v, path+".min_free_percent"); ok {
			x, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
			if err != nil || x < 0 || x >= 100 {
				b.add(v.Line, path+".min_free_percent", "invalid percentage %q; give a number from 0 to 99.9, e.g. 5", s)
			} else {
				d.MinFreePercent = x
			}
		}
	}
	if _, ok := f["min_free_bytes"]; !ok {
		if _, ok := f["min_free_percent"]; !ok && f != nil {
			b.add(n.Line, path, "sets no limit; give min_free_bytes (e.g. 1GiB), min_free_percent (e.g. 5) or both")
		}
	}
	return d
}
