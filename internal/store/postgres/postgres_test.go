package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/store/storetest"
)

func open(t *testing.T, dsn, cluster, node, prefix string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, Options{Cluster: cluster, Node: node, DSN: dsn, TablePrefix: prefix})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	srv := storetest.StartPostgres(t)

	t.Run("Suite", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Pair {
			cluster := storetest.Cluster(t)
			fw := storetest.Forward(t, srv.Addr)
			a := open(t, srv.DSN, cluster, "a", "")
			b := open(t, strings.Replace(srv.DSN, srv.Addr, fw.Addr, 1), cluster, "b", "")
			return storetest.Pair{A: a, B: b, Cut: fw.Cut, Heal: fw.Heal, WatchDelay: 500 * time.Millisecond}
		})
	})
	t.Run("Props", func(t *testing.T) {
		storetest.RunProps(t, func(t *testing.T) storetest.Pair {
			cluster := storetest.Cluster(t)
			return storetest.Pair{A: open(t, srv.DSN, cluster, "a", ""), B: open(t, srv.DSN, cluster, "b", ""), WatchDelay: 500 * time.Millisecond}
		})
	})

	// Agents that start together migrate once, without errors, and a second
	// start changes nothing.
	t.Run("ConcurrentMigrations", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 5)
		for i := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				s, err := Open(ctx, Options{Cluster: "m", Node: string(rune('a' + i)), DSN: srv.DSN, TablePrefix: "mig_"})
				if err != nil {
					errs <- err
					return
				}
				_ = s.Close()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent open: %v", err)
		}
		s := open(t, srv.DSN, "m", "z", "mig_")
		out, err := srv.Psql("SELECT count(*), max(version) FROM mig_schema_migrations")
		if err != nil {
			t.Fatal(err, out)
		}
		if want := "3|3"; out != want || s.SchemaVersion() != 3 {
			t.Fatalf("schema_migrations: %q, want %q", out, want)
		}
	})

	t.Run("RaiseEpoch", func(t *testing.T) {
		s := open(t, srv.DSN, "r", "a", "raise_")
		if err := s.RaiseEpoch(context.Background(), 1000); err != nil {
			t.Fatal(err)
		}
		if err := s.RaiseEpoch(context.Background(), 10); err != nil {
			t.Fatal(err)
		}
		if e, err := s.MaxEpoch(context.Background()); err != nil || e != 1000 {
			t.Fatalf("max epoch %d, %v; want 1000 (never lowered)", e, err)
		}
		if _, err := s.NewSession(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
		if e, err := s.Campaign(context.Background(), "a"); err != nil || e <= 1000 {
			t.Fatalf("campaign after raise: %d, %v; want > 1000", e, err)
		}
	})
}
