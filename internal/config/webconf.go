package config

import (
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Dashboard configures the web dashboard every agent serves at /ui/
// (`dashboard:`). The zero value is no dashboard.
type Dashboard struct {
	Enabled       bool
	Users         []DashboardUser
	SessionTTL    time.Duration // a session ends this long after login
	SecureCookies string        // "auto" (Secure under TLS), "always" (behind a TLS proxy), "never"
	Line          int
}

// DashboardUser is one person who may log in to the dashboard.
type DashboardUser struct {
	Name         string
	Role         string // "operator" (may act) or "viewer" (may look)
	PasswordHash string // bcrypt, "$2a$..."; never shown anywhere
	Line         int
}

// Dashboard roles.
const (
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

// User returns the dashboard user called name.
func (d Dashboard) User(name string) (DashboardUser, bool) {
	for _, u := range d.Users {
		if u.Name == name {
			return u, true
		}
	}
	return DashboardUser{}, false
}

const (
	defaultSessionTTL = 8 * time.Hour
	maxSessionTTL     = 30 * 24 * time.Hour
)

var (
	dashboardKeys     = []string{"enabled", "users", "session_ttl", "secure_cookies"}
	dashboardUserKeys = []string{"name", "role", "password_hash", "password_hash_file"}

	userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)
	// bcrypt's modular crypt format: $2a$, $2b$ or $2y$, a two-digit cost,
	// 22 characters of salt and 31 of hash.
	bcryptHash = regexp.MustCompile(`^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$`)
)

func (b *builder) dashboard(f fields) {
	d := &b.c.Dashboard
	n, ok := f["dashboard"]
	if !ok {
		return // the zero value: no dashboard
	}
	d.SessionTTL = defaultSessionTTL
	d.SecureCookies = "auto"
	d.Line = n.Line
	if l, ok := b.lines["dashboard"]; ok {
		d.Line = l
	}
	df := b.mapping(n, "dashboard", dashboardKeys)
	if df == nil {
		return
	}
	enabledSet := false
	if v, ok := df["enabled"]; ok {
		d.Enabled, enabledSet = b.boolean(v, "dashboard.enabled")
	}
	_, usersGiven := df["users"]
	if v, ok := df["users"]; ok {
		b.dashboardUsers(v)
	}
	if !enabledSet {
		d.Enabled = len(d.Users) > 0
	}
	if v, ok := df["session_ttl"]; ok {
		if x, ok := b.duration(v, "dashboard.session_ttl"); ok {
			if x < time.Minute || x > maxSessionTTL {
				b.add(v.Line, "dashboard.session_ttl", "is %s; use a duration from 1m to %s, e.g. 8h", x, maxSessionTTL)
			} else {
				d.SessionTTL = x
			}
		}
	}
	if v, ok := df["secure_cookies"]; ok {
		if s, ok := b.oneOf(v, "dashboard.secure_cookies", "auto", "always", "never"); ok {
			d.SecureCookies = s
		}
	}
	if !d.Enabled {
		return
	}
	if len(d.Users) == 0 && !usersGiven {
		b.add(d.Line, "dashboard.users", "missing; the dashboard needs at least one user, e.g. users: [{name: alice, role: operator, password_hash: \"$2a$...\"}] (make the hash with `haven dashboard hash-password`), or set enabled: false")
	}
	if b.c.APIAuth.Token == "" {
		b.add(d.Line, "dashboard", "needs api.token: each node's dashboard reaches the other agents (logs, service actions) over the authenticated API; set api.token or api.token_file, or set dashboard.enabled: false")
	}
}

func (b *builder) dashboardUsers(n *yaml.Node) {
	items, ok := b.sequence(n, "dashboard.users", "users")
	if !ok {
		return
	}
	names := map[string]string{}
	for i, it := range items {
		path := indexField("dashboard.users", i)
		uf := b.mapping(it, path, dashboardUserKeys)
		if uf == nil {
			continue
		}
		u := DashboardUser{Line: it.Line}
		valid := true
		if v := b.required(uf, path, "name", "give the user a name, e.g. name: alice"); v != nil {
			if s, ok := b.str(v, path+".name"); ok {
				switch other, dup := names[s]; {
				case !userName.MatchString(s):
					b.add(v.Line, path+".name", "invalid name %q; use up to 64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit", s)
					valid = false
				case dup:
					b.add(v.Line, path+".name", "duplicate user %q (also %s on line %d); give every user their own name", s, other, b.lineFor(other))
					valid = false
				default:
					names[s] = path
				}
				u.Name = s
			}
		} else {
			valid = false
		}
		if v := b.required(uf, path, "role", "say what the user may do: role: operator (look and act) or role: viewer (look only)"); v != nil {
			u.Role, ok = b.oneOf(v, path+".role", RoleOperator, RoleViewer)
			valid = valid && ok
		} else {
			valid = false
		}
		hash, hashOK := uf["password_hash"]
		file, fileOK := uf["password_hash_file"]
		switch {
		case hashOK && fileOK:
			b.add(file.Line, path+".password_hash_file", "both password_hash and password_hash_file are set; keep one")
			valid = false
		case hashOK:
			if s, ok := b.str(hash, path+".password_hash"); ok {
				u.PasswordHash = strings.TrimSpace(s)
				valid = b.checkHash(hash.Line, path+".password_hash", u.PasswordHash, "") && valid
			} else {
				valid = false
			}
		case fileOK:
			if p, ok := b.str(file, path+".password_hash_file"); ok {
				data, err := os.ReadFile(b.resolve(p))
				if err != nil {
					b.add(file.Line, path+".password_hash_file", "cannot read %s: %v; write the bcrypt hash from `haven dashboard hash-password` into it, readable by the agent", p, err)
					valid = false
				} else {
					u.PasswordHash = strings.TrimSpace(string(data))
					valid = b.checkHash(file.Line, path+".password_hash_file", u.PasswordHash, " in "+p) && valid
				}
			} else {
				valid = false
			}
		default:
			b.add(b.lineFor(path), path+".password_hash", "missing; give the bcrypt hash of the user's password (from `haven dashboard hash-password`), or password_hash_file: a file holding it")
			valid = false
		}
		if valid {
			b.c.Dashboard.Users = append(b.c.Dashboard.Users, u)
		}
	}
}

// checkHash reports a password hash that is not bcrypt; where says where
// the hash came from, for the message. The hash itself is never echoed.
func (b *builder) checkHash(line int, field, hash, where string) bool {
	if bcryptHash.MatchString(hash) {
		return true
	}
	what := "is not a bcrypt hash"
	if strings.HasPrefix(hash, "$argon2") {
		what = "is an argon2 hash, which haven does not read yet"
	} else if !strings.HasPrefix(hash, "$") {
		what = "looks like a plain password, not a hash"
	}
	b.add(line, field, "the value%s %s; store only bcrypt hashes ($2a$..., $2b$... or $2y$...): make one with `haven dashboard hash-password` (it reads the password from stdin)", where, what)
	return false
}
