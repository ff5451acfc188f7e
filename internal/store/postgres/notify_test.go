package postgres

import "testing"

// TestNews: a watcher reads again for a notification of its cluster newer
// than its last read, or one it cannot parse; not for its own cluster's
// changes it has read, nor for other clusters'.
func TestNews(t *testing.T) {
	for _, c := range []struct {
		payload string
		rev     int64
		want    bool
	}{
		{"8 c1", 7, true},
		{"7 c1", 7, false},
		{"3 c1", 7, false},
		{"8 c2", 7, false},
		{"8 c1 with spaces", 7, false},
		{"8 c1", -1, true},
		{"x c1", 7, true},
		{"c1", 7, true},
		{"c2", 7, false},
	} {
		if got := news(c.payload, "c1", c.rev); got != c.want {
			t.Errorf("news(%q, c1, %d) = %v, want %v", c.payload, c.rev, got, c.want)
		}
	}
	if !news("9 c1 with spaces", "c1 with spaces", 8) {
		t.Error("a cluster name with spaces is not recognised")
	}
}

func TestRebind(t *testing.T) {
	for q, want := range map[string]string{
		"SELECT 1":                             "SELECT 1",
		"SELECT a FROM t WHERE b = ?":          "SELECT a FROM t WHERE b = $1",
		"UPDATE t SET a = ? WHERE b IN (?, ?)": "UPDATE t SET a = $1 WHERE b IN ($2, $3)",
	} {
		if got := (dialect{}).Rebind(q); got != want {
			t.Errorf("Rebind(%q) = %q, want %q", q, got, want)
		}
	}
}
