package proxy

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCookieSignVerify(t *testing.T) {
	s := signer{key: []byte("0123456789abcdef-secret")}
	v := s.Sign("n2")
	if node, ok := s.Verify(v); !ok || node != "n2" {
		t.Fatalf("Verify(Sign(n2)) = %q, %v", node, ok)
	}
	other := signer{key: []byte("another-secret-of-16b")}
	forged := []string{
		"n1",                              // no MAC
		"n1." + s.mac("n2"),               // MAC of another node
		strings.Replace(v, "n2", "n1", 1), // renamed
		v[:len(v)-1],                      // truncated
		v + "A",                           // extended
		other.Sign("n2"),                  // signed with another key
		".", "", "n2.", "." + s.mac(""),
		strings.Repeat("x", 300) + "." + s.mac("x"),
	}
	for _, f := range forged {
		if node, ok := s.Verify(f); ok {
			t.Errorf("Verify(%q) accepted a forged cookie for %q", f, node)
		}
	}
}

// FuzzCookieVerify: whatever a client sends as the affinity cookie, Verify
// does not panic, accepts only what Sign made, and the re-homing hash picks
// one of the nodes.
func FuzzCookieVerify(f *testing.F) {
	s := signer{key: []byte("0123456789abcdef-secret")}
	for _, seed := range []string{s.Sign("n1"), s.Sign("a.b"), "n1.", ".x", "", "n1.AAAA", strings.Repeat(".", 300)} {
		f.Add(seed)
	}
	nodes := []string{"n1", "n2", "n3"}
	f.Fuzz(func(t *testing.T, v string) {
		if node, ok := s.Verify(v); ok && s.Sign(node) != v {
			t.Fatalf("Verify(%q) accepted node %q, whose cookie is %q", v, node, s.Sign(node))
		}
		if n := hrw(v, nodes); n != "n1" && n != "n2" && n != "n3" {
			t.Fatalf("hrw(%q) = %q, not a node", v, n)
		}
		if v != "" && len(v) < 200 {
			if node, ok := s.Verify(s.Sign(v)); !ok || node != v {
				t.Fatalf("Verify(Sign(%q)) = %q, %v", v, node, ok)
			}
		}
	})
}

func TestIdempotent(t *testing.T) {
	for _, tt := range []struct {
		method, key string
		want        bool
	}{
		{"GET", "", true}, {"HEAD", "", true}, {"OPTIONS", "", true}, {"TRACE", "", true},
		{"POST", "", false}, {"PUT", "", false}, {"PATCH", "", false}, {"DELETE", "", false},
		{"POST", "abc", true}, {"PATCH", "k1", true},
	} {
		r := httptest.NewRequest(tt.method, "/", nil)
		if tt.key != "" {
			r.Header.Set("Idempotency-Key", tt.key)
		}
		if got := Idempotent(r); got != tt.want {
			t.Errorf("%s key=%q: Idempotent = %v, want %v", tt.method, tt.key, got, tt.want)
		}
	}
}

// TestHRWMovement checks rendezvous hashing's promise: adding or removing
// one of N nodes moves about 1/N of the keys, and only those that must move.
func TestHRWMovement(t *testing.T) {
	const keys = 20000
	for _, n := range []int{3, 5, 8} {
		nodes := make([]string, n)
		for i := range nodes {
			nodes[i] = fmt.Sprintf("n%d", i+1)
		}
		before := make([]string, keys)
		count := map[string]int{}
		for k := range keys {
			before[k] = hrw(fmt.Sprintf("session-%d", k), nodes)
			count[before[k]]++
		}
		for _, c := range count {
			if math.Abs(float64(c)/keys-1/float64(n)) > 0.03 {
				t.Errorf("N=%d: uneven spread %v", n, count)
				break
			}
		}
		// Remove the last node: only its keys move.
		fewer := nodes[:n-1]
		moved := 0
		for k := range keys {
			after := hrw(fmt.Sprintf("session-%d", k), fewer)
			if after != before[k] {
				moved++
				if before[k] != nodes[n-1] {
					t.Fatalf("N=%d: key %d moved from %s, which stayed", n, k, before[k])
				}
			}
		}
		checkShare(t, fmt.Sprintf("remove 1 of %d", n), moved, keys, 1/float64(n))
		// Add a node: about 1/(N+1) move, all to the new one.
		more := append(append([]string(nil), nodes...), "new")
		moved = 0
		for k := range keys {
			after := hrw(fmt.Sprintf("session-%d", k), more)
			if after != before[k] {
				moved++
				if after != "new" {
					t.Fatalf("N=%d: key %d moved to %s, not to the new node", n, k, after)
				}
			}
		}
		checkShare(t, fmt.Sprintf("add 1 to %d", n), moved, keys, 1/float64(n+1))
	}
}

func checkShare(t *testing.T, what string, moved, total int, want float64) {
	t.Helper()
	got := float64(moved) / float64(total)
	if math.Abs(got-want) > 0.03 {
		t.Errorf("%s: %.3f of keys moved, want about %.3f", what, got, want)
	} else {
		t.Logf("%s: %.3f of keys moved (ideal %.3f)", what, got, want)
	}
}

func TestCookieStickiness(t *testing.T) {
	// choose() keeps a valid cookie, and re-homes forged ones consistently.
	p := &Proxy{signer: &signer{key: []byte("0123456789abcdef")}}
	p.cfg.Sticky.Mode, p.cfg.Sticky.Cookie = "cookie", "HAVEN_AFFINITY"
	ts := &targetSet{names: []string{"n1", "n2", "n3"}}
	for _, n := range ts.names {
		ts.nodes = append(ts.nodes, &backend{name: n})
	}
	pick := func(cookie string) (string, string) {
		r := httptest.NewRequest("GET", "/", nil)
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: "HAVEN_AFFINITY", Value: cookie})
		}
		w := httptest.NewRecorder()
		b := p.choose(ts, r, &reqState{w: w})
		return b.name, w.Header().Get("Set-Cookie")
	}
	if got, set := pick(p.signer.Sign("n3")); got != "n3" || set != "" {
		t.Fatalf("valid cookie for n3: went to %s, Set-Cookie %q", got, set)
	}
	forged := "n3.AAAAAAAAAAAAAAAAAAAAAA"
	first, set := pick(forged)
	if !strings.Contains(set, "HAVEN_AFFINITY="+p.signer.Sign(first)) || !strings.Contains(set, "HttpOnly") {
		t.Fatalf("forged cookie: Set-Cookie %q does not re-home to %s", set, first)
	}
	for range 10 {
		if again, _ := pick(forged); again != first {
			t.Fatalf("the same forged cookie went to %s then %s", first, again)
		}
	}
	// The cookie's node left: re-homed and rewritten.
	ts2 := &targetSet{names: []string{"n1", "n2"}, nodes: ts.nodes[:2]}
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: "HAVEN_AFFINITY", Value: p.signer.Sign("n3")})
	w := httptest.NewRecorder()
	if b := p.choose(ts2, r, &reqState{w: w}); b.name == "n3" || !strings.Contains(w.Header().Get("Set-Cookie"), p.signer.Sign(b.name)) {
		t.Fatalf("cookie of a departed node: went to %s with Set-Cookie %q", b.name, w.Header().Get("Set-Cookie"))
	}
}
