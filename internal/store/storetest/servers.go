package storetest

import (
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/dbserver"
)

// Server is a throwaway database or etcd server on loopback
// (dbserver.Server), bound to a test: a failure to start fails the test —
// the suite never skips, since CI must run against every backend — and it
// is stopped and removed when the test ends, with its log shown if the
// test failed.
type Server struct {
	*dbserver.Server
	t testing.TB
}

func wrap(t testing.TB, s *dbserver.Server, err error) *Server {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	w := &Server{Server: s, t: t}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("---- log of %s ----\n%s", s.Kind, s.Log())
		}
		s.Close()
	})
	return w
}

// Start starts the server and waits until it accepts clients.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.Server.Start(); err != nil {
		s.t.Fatal(err)
	}
}

// Restart stops and starts the server; it returns how long clients could
// not reach it.
func (s *Server) Restart() time.Duration {
	s.t.Helper()
	d, err := s.Server.Restart()
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// FreePort returns a free loopback port.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := dbserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// StartPostgres starts a throwaway PostgreSQL server (dbserver.StartPostgres).
func StartPostgres(t testing.TB) *Server {
	t.Helper()
	s, err := dbserver.StartPostgres()
	return wrap(t, s, err)
}

// StartMariaDB starts a throwaway MariaDB server (dbserver.StartMariaDB).
func StartMariaDB(t testing.TB) *Server {
	t.Helper()
	s, err := dbserver.StartMariaDB()
	return wrap(t, s, err)
}

// StartEtcd starts a throwaway single-member etcd server (dbserver.StartEtcd).
func StartEtcd(t testing.TB) *Server {
	t.Helper()
	s, err := dbserver.StartEtcd()
	return wrap(t, s, err)
}
