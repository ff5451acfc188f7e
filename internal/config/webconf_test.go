package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A bcrypt hash of "password1" at cost 4, for parsing only.
const testHash = "$2a$04$ZQ4v3ZJY7uM0n6rQ5b4QyO0o1vS5Qm5c1m8lT1bQm0mXW0vHq3Y2a"

const dashBase = "cluster: x\ndata_dir: /tmp/x\napi: {token: 0123456789abcdef0123}\nnodes:\n  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201}\n"

func TestDashboardAbsentIsOff(t *testing.T) {
	c := mustParse(t, "h.yaml", dashBase)
	if c.Dashboard.Enabled || len(c.Dashboard.Users) != 0 {
		t.Fatalf("dashboard = %+v; want off", c.Dashboard)
	}
	c = mustParse(t, "h.yaml", dashBase+"dashboard:\n  users: [{name: a, role: viewer, password_hash: \""+testHash+"\"}]\n")
	if !c.Dashboard.Enabled || c.Dashboard.SessionTTL != 8*time.Hour || c.Dashboard.SecureCookies != "auto" {
		t.Fatalf("dashboard = %+v; want on (users given) with the defaults", c.Dashboard)
	}
}

func TestDashboardSection(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "victor.hash"), []byte(testHash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := dashBase + `dashboard:
  users:
    - {name: alice, role: operator, password_hash: "` + testHash + `"}
    - {name: victor, role: viewer, password_hash_file: victor.hash}
  session_ttl: 2h
  secure_cookies: always
`
	path := filepath.Join(dir, "haven.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Dashboard
	if !d.Enabled || d.SessionTTL != 2*time.Hour || d.SecureCookies != "always" || d.Line != 6 || len(d.Users) != 2 {
		t.Fatalf("dashboard = %+v", d)
	}
	if u, ok := d.User("victor"); !ok || u.Role != RoleViewer || u.PasswordHash != testHash || u.Line != 9 {
		t.Fatalf("victor = %+v", u)
	}
	if _, ok := d.User("nobody"); ok {
		t.Fatal("found a user who is not configured")
	}
	c = mustParse(t, "h.yaml", dashBase+"dashboard:\n  enabled: false\n  users: [{name: a, role: viewer, password_hash: \""+testHash+"\"}]\n")
	if c.Dashboard.Enabled {
		t.Fatal("enabled: false ignored")
	}
}

func TestDashboardErrors(t *testing.T) {
	user := func(fields string) string { return dashBase + "dashboard:\n  users:\n    - {" + fields + "}\n" }
	cases := []struct{ name, yaml, want string }{
		{"no users", dashBase + "dashboard: {enabled: true}\n", "6: dashboard.users: missing; the dashboard needs at least one user"},
		{"plain password", user(`name: a, role: operator, password_hash: hunter2`), "8: dashboard.users[0].password_hash: the value looks like a plain password, not a hash"},
		{"argon2", user(`name: a, role: operator, password_hash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"`), "is an argon2 hash, which haven does not read yet"},
		{"no hash", user(`name: a, role: operator`), "8: dashboard.users[0].password_hash: missing"},
		{"both", user(`name: a, role: operator, password_hash: "` + testHash + `", password_hash_file: f`), "both password_hash and password_hash_file"},
		{"missing file", user(`name: a, role: operator, password_hash_file: /nonexistent/h`), "cannot read /nonexistent/h"},
		{"bad role", user(`name: a, role: admin, password_hash: "` + testHash + `"`), `dashboard.users[0].role: invalid value "admin"; allowed: operator, viewer`},
		{"no role", user(`name: a, password_hash: "` + testHash + `"`), "dashboard.users[0].role: missing"},
		{"bad name", user(`name: "a b", role: viewer, password_hash: "` + testHash + `"`), `dashboard.users[0].name: invalid name "a b"`},
		{"duplicate", dashBase + "dashboard:\n  users:\n    - {name: a, role: viewer, password_hash: \"" + testHash + "\"}\n    - {name: a, role: operator, password_hash: \"" + testHash + "\"}\n", `9: dashboard.users[1].name: duplicate user "a" (also dashboard.users[0] on line 8)`},
		{"unknown key", dashBase + "dashboard: {users: [], colour: red}\n", `dashboard.colour: unknown field "colour"`},
		{"short ttl", user(`name: a, role: viewer, password_hash: "`+testHash+`"`) + "  session_ttl: 10s\n", "dashboard.session_ttl: is 10s; use a duration from 1m"},
		{"bad cookies", user(`name: a, role: viewer, password_hash: "`+testHash+`"`) + "  secure_cookies: maybe\n", `dashboard.secure_cookies: invalid value "maybe"`},
		{"no token", strings.Replace(user(`name: a, role: viewer, password_hash: "`+testHash+`"`), "api: {token: 0123456789abcdef0123}\n", "", 1), "dashboard: needs api.token"},
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
