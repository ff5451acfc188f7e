package etcdstore

import (
	"context"
	"testing"
	"time"
)

// TestEmbeddedMemberDBSize: the embedded member's status gives Members its
// database's size, the part in use and its quota (etcd's default, 2 GiB),
// which status warns about and /metrics exports.
func TestEmbeddedMemberDBSize(t *testing.T) {
	t.Parallel()
	_, addr := startOneMember(t)
	s, err := Dial(t.Name(), []string{addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms, err := s.Members(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("members %+v: %v", ms, err)
	}
	if m := ms[0]; m.DBBytes <= 0 || m.DBInUseBytes <= 0 || m.DBQuotaBytes != 2<<30 || len(m.Alarms) != 0 {
		t.Fatalf("member %+v: want the database's size, in use, the default 2 GiB quota, no alarm", m)
	}
}
