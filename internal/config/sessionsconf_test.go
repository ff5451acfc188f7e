package config

import (
	"errors"
	"strings"
	"testing"
)

const sessBase = "cluster: x\ndata_dir: /tmp/x\nnodes:\n  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201}\n"

func TestSessionsSection(t *testing.T) {
	c := mustParse(t, "h.yaml", sessBase)
	if c.Sessions != (Sessions{}) {
		t.Fatalf("no sessions section, got %+v", c.Sessions)
	}
	c = mustParse(t, "h.yaml", sessBase+"sessions:\n  listen: 127.0.0.1:6379\n")
	if s := c.Sessions; s.Listen != "127.0.0.1:6379" || s.MaxValueBytes != 1<<20 || s.MaxKeys != 0 || s.Password != "" || s.Line != 5 {
		t.Fatalf("defaults: %+v", s)
	}
	c = mustParse(t, "h.yaml", sessBase+"sessions: {listen: \"0.0.0.0:${P}\", max_value_bytes: 64KiB, max_keys: 1000, password: 0123456789abcdef}\n")
	if s := c.Sessions; s.Listen != "0.0.0.0:${P}" || s.MaxValueBytes != 64<<10 || s.MaxKeys != 1000 || s.Password != "0123456789abcdef" {
		t.Fatalf("given: %+v", s)
	}
	for _, be := range []string{"postgres", "mysql"} {
		// The SQL stores hold sessions too (sessions.SQLData).
		c = mustParse(t, "h.yaml", strings.Replace(sessBase, "nodes:", "store: {backend: "+be+", dsn: \"postgres://h/db\"}\nnodes:", 1)+"sessions: {listen: 127.0.0.1:6379}\n")
		if c.Sessions.Listen != "127.0.0.1:6379" {
			t.Fatalf("sessions with the %s store: %+v", be, c.Sessions)
		}
	}
}

// TestSessionsDescribeLayout: config check says that sessions on etcd in
// active-passive move to the packed layout, one-way; active-active and
// the SQL stores keep one key (row) per session.
func TestSessionsDescribeLayout(t *testing.T) {
	const layout = "layout in etcd: one key per session until every node runs a version that reads the packed layout, then packed"
	sess := "sessions: {listen: 127.0.0.1:6379}\n"
	if d := mustParse(t, "h.yaml", sessBase+sess).Describe(); !strings.Contains(d, layout) {
		t.Errorf("embedded, active-passive: no layout line in\n%s", d)
	}
	if d := mustParse(t, "h.yaml", sessBase+"mode: active-active\n"+sess).Describe(); strings.Contains(d, "layout in etcd") {
		t.Errorf("active-active: a layout line in\n%s", d)
	}
	pg := strings.Replace(sessBase, "nodes:", "store: {backend: postgres, dsn: \"postgres://h/db\"}\nnodes:", 1)
	if d := mustParse(t, "h.yaml", pg+sess).Describe(); strings.Contains(d, "layout in etcd") {
		t.Errorf("postgres: a layout line in\n%s", d)
	}
}

func TestSessionsErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"no listen", sessBase + "sessions: {max_keys: 10}\n", "5: sessions.listen: missing"},
		{"bad listen", sessBase + "sessions: {listen: nowhere}\n", `5: sessions.listen: invalid address "nowhere"`},
		{"open without password", sessBase + "sessions: {listen: 0.0.0.0:6379}\n", "5: sessions.password: missing; sessions.listen 0.0.0.0:6379 is reachable from other hosts"},
		{"short password", sessBase + "sessions: {listen: 127.0.0.1:6379, password: hunter2}\n", "sessions.password: is 7 characters"},
		{"both", sessBase + "sessions: {listen: 127.0.0.1:6379, password: 0123456789abcdef, password_file: f}\n", "both password and password_file"},
		{"missing file", sessBase + "sessions: {listen: 127.0.0.1:6379, password_file: /nonexistent/p}\n", "cannot read /nonexistent/p"},
		{"huge value", sessBase + "sessions: {listen: 127.0.0.1:6379, max_value_bytes: 2MiB}\n", "sessions.max_value_bytes: 2097152 bytes cannot fit one store request with its key (etcd takes requests of at most 1.5 MiB by default, haven's embedded etcd too); set max_value_bytes: 1MiB or less"},
		{"huge value on etcd", strings.Replace(sessBase, "nodes:", "store: {backend: etcd, endpoints: [\"127.0.0.1:2379\"]}\nnodes:", 1) + "sessions: {listen: 127.0.0.1:6379, max_value_bytes: 1048577}\n", "sessions.max_value_bytes: 1048577 bytes cannot fit one store request with its key (etcd takes"},
		{"huge value on mysql", strings.Replace(sessBase, "nodes:", "store: {backend: mysql, dsn: \"u:p@tcp(h)/db\"}\nnodes:", 1) + "sessions: {listen: 127.0.0.1:6379, max_value_bytes: 16MiB}\n", "sessions.max_value_bytes: 16777216 bytes cannot fit one store request with its key (haven commits a command in one store request"},
		{"not a size", sessBase + "sessions: {listen: 127.0.0.1:6379, max_value_bytes: lots}\n", "sessions.max_value_bytes: invalid size"},
		{"unknown key", sessBase + "sessions: {listen: 127.0.0.1:6379, db: 2}\n", `sessions.db: unknown field "db"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("h.yaml", []byte(tc.yaml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v; want a config error with %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err =\n%v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error echoes the secret: %v", err)
			}
		})
	}
}
