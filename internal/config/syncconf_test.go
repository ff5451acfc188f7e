package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const syncBase = "cluster: x\ndata_dir: /tmp/x\ninsecure: true\napi: {token: 0123456789abcdef0123}\nnodes:\n  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201, env: {REC: /srv/a/rec}}\n  - {name: b, api: 127.0.0.1:7002, peer: 127.0.0.1:7102, client: 127.0.0.1:7202, env: {REC: /srv/b/rec}}\n  - {name: w, witness: true, peer: 127.0.0.1:7103, client: 127.0.0.1:7203}\n"

func TestSyncSection(t *testing.T) {
	c := mustParse(t, "/etc/h.yaml", syncBase)
	if c.Sync.Enabled() {
		t.Fatalf("no sync section, got %+v", c.Sync)
	}
	c = mustParse(t, "/etc/h.yaml", syncBase+"sync:\n  folders:\n    - path: /var/lib/rec\n    - {name: ex, path: \"${REC}\", include: ['*.csv'], exclude: [tmp], delete: mirror, quiet: 2s}\n  max_lag: 5s\n  bandwidth: 10MiB\n")
	s := c.Sync
	if s.MaxLag != 5*time.Second || s.Bandwidth != 10<<20 || len(s.Folders) != 2 {
		t.Fatalf("sync %+v", s)
	}
	if f := s.Folders[0]; f.Name != "rec" || f.Path != "/var/lib/rec" || f.Delete != "keep" || f.Quiet != DefaultSyncQuiet {
		t.Errorf("folder 0 %+v", f)
	}
	f := s.Folders[1]
	if f.Name != "ex" || f.Delete != "mirror" || f.Quiet != 2*time.Second || f.Include[0] != "*.csv" || f.Exclude[0] != "tmp" {
		t.Errorf("folder 1 %+v", f)
	}
	if p := c.FolderPath(f, c.Nodes[1]); p != "/srv/b/rec" {
		t.Errorf("b keeps ex at %s, want /srv/b/rec", p)
	}
	c = mustParse(t, "/etc/h.yaml", syncBase+"sync: {folders: [{path: rec}]}\n")
	if c.Sync.Folders[0].Path != "/etc/rec" || c.Sync.MaxLag != DefaultSyncMaxLag {
		t.Errorf("relative path %+v", c.Sync)
	}
}

func TestSyncErrors(t *testing.T) {
	noAuth := strings.Replace(syncBase, "api: {token: 0123456789abcdef0123}\n", "", 1)
	cases := []struct{ name, yaml, want string }{
		{"no folders", syncBase + "sync: {max_lag: 5s}\n", "sync.folders: missing"},
		{"empty", syncBase + "sync: {folders: []}\n", "sync.folders: is empty"},
		{"no path", syncBase + "sync: {folders: [{name: x}]}\n", "sync.folders[0].path: missing"},
		{"root", syncBase + "sync: {folders: [{path: /}]}\n", "is /; replicate a folder"},
		{"bad delete", syncBase + "sync: {folders: [{path: /r, delete: sometimes}]}\n", "sync.folders[0].delete"},
		{"bad pattern", syncBase + "sync: {folders: [{path: /r, exclude: ['[']}]}\n", `pattern "[" is malformed`},
		{"overlap", syncBase + "sync: {folders: [{path: /r}, {path: /r/sub}]}\n", "/r and /r/sub overlap"},
		{"same name", syncBase + "sync: {folders: [{path: /a/r}, {path: /b/r}]}\n", `folder name "r" is used twice`},
		{"data dir", syncBase + "sync: {folders: [{path: /tmp/x/files}]}\n", "overlaps data_dir"},
		{"undefined var", syncBase + "sync: {folders: [{path: \"${NOPE}/r\"}]}\n", "${NOPE} is not defined for node a, b"},
		{"quiet past max_lag", syncBase + "sync: {max_lag: 1s, folders: [{path: /r, quiet: 2s}]}\n", "is not less than sync.max_lag"},
		{"active-active", strings.Replace(syncBase, "cluster: x\n", "cluster: x\nmode: active-active\n", 1) + "sync: {folders: [{path: /r}]}\n", "needs one writer"},
		{"no auth", noAuth + "sync: {folders: [{path: /r}]}\n", "neither; add tls:"},
		{"tiny bandwidth", syncBase + "sync: {bandwidth: 100, folders: [{path: /r}]}\n", "too little"},
		{"bad mode", syncBase + "sync: {folders: [{path: /r, mode: both-ways}]}\n", "sync.folders[0].mode"},
		{"unknown key", syncBase + "sync: {folders: [{path: /r, recursive: true}]}\n", `unknown field "recursive"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/etc/h.yaml", []byte(tc.yaml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v; want a config error with %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err =\n%v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDiskCheckConfig(t *testing.T) {
	c := mustParse(t, "/etc/h.yaml", syncBase+"checks:\n  - {name: rec, disk: {path: \"${REC}\", min_free_bytes: 1GiB, min_free_percent: 5}}\n")
	if d := c.Checks[0].Disk; d == nil || d.Path != "${REC}" || d.MinFreeBytes != 1<<30 || d.MinFreePercent != 5 {
		t.Fatalf("disk check %+v", c.Checks[0])
	}
	for yaml, want := range map[string]string{
		"checks: [{disk: {path: /r}}]":                                                   "sets no limit",
		"checks: [{disk: {min_free_bytes: 1GiB}}]":                                       "checks[0].disk.path: missing",
		"checks: [{disk: {path: /r, min_free_percent: 120}}]":                            "invalid percentage",
		"checks: [{disk: {path: /r, min_free_bytes: lots}}]":                             "invalid size",
		"checks: [{disk: {path: /r, min_free_bytes: 1}, tcp: {address: \"1.2.3.4:5\"}}]": "sets tcp and disk",
		"checks: [{disk: {path: \"${NOPE}\", min_free_bytes: 1}}]":                       "${NOPE} is not defined",
	} {
		_, err := Parse("/etc/h.yaml", []byte(syncBase+yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", yaml, err, want)
		}
	}
}
