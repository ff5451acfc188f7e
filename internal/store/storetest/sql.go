package storetest

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// SQLStore is what RunSQL needs of a SQL backend's store: ha.Store, its
// schema version and its epoch counter.
type SQLStore interface {
	ha.Store
	SchemaVersion() int
	MaxEpoch(ctx context.Context) (ha.Epoch, error)
	RaiseEpoch(ctx context.Context, e ha.Epoch) error
	// SessionDB is the pool of the data connections (the session store's
	// commits, fenced data, history) and the database's kind.
	SessionDB() (*sql.DB, string)
	// SessionFence is a session commit's fence, run in its transaction.
	SessionFence(ctx context.Context, tx *sql.Tx, node string, epoch ha.Epoch) error
}

// SQLBackend is a SQL backend (postgres, mysql) on its throwaway server,
// as RunSQL tests it; S is its store type.
type SQLBackend[S SQLStore] struct {
	Server *Server
	// Open opens a store of cluster as node on the database at dsn, with
	// the table prefix ("": the default).
	Open func(ctx context.Context, dsn, cluster, node, prefix string) (S, error)
	// Migrations reads the schema_migrations table of prefix "mig_" on the
	// server as "count|max(version)".
	Migrations func() (string, error)
	// WatchDelay is how long a change may take to reach a watcher in the
	// suite (B behind a forwarder); PropsWatchDelay, in the properties tests.
	WatchDelay, PropsWatchDelay time.Duration
}

// RunSQL runs the suite (Run) and the properties tests (RunProps) on
// backend, and what only the SQL backends have: migrations that agents
// starting together apply once, and an epoch counter that RaiseEpoch never
// lowers, and lease renewals that never wait behind the data connections.
// The subtests keep the names they had in each backend's test.
func RunSQL[S SQLStore](t *testing.T, backend SQLBackend[S]) {
	srv := backend.Server
	open := func(t *testing.T, dsn, cluster, node, prefix string) S {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := backend.Open(ctx, dsn, cluster, node, prefix)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}

	t.Run("Suite", func(t *testing.T) {
		Run(t, func(t *testing.T) Pair {
			cluster := Cluster(t)
			fw := Forward(t, srv.Addr)
			a := open(t, srv.DSN, cluster, "a", "")
			b := open(t, strings.Replace(srv.DSN, srv.Addr, fw.Addr, 1), cluster, "b", "")
			return Pair{A: a, B: b, Cut: fw.Cut, Heal: fw.Heal, WatchDelay: backend.WatchDelay}
		})
	})
	t.Run("Props", func(t *testing.T) {
		RunProps(t, func(t *testing.T) Pair {
			cluster := Cluster(t)
			return Pair{A: open(t, srv.DSN, cluster, "a", ""), B: open(t, srv.DSN, cluster, "b", ""), WatchDelay: backend.PropsWatchDelay}
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
				s, err := backend.Open(ctx, srv.DSN, "m", string(rune('a'+i)), "mig_")
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
		out, err := backend.Migrations()
		if err != nil {
			t.Fatal(err, out)
		}
		if want := "3|3"; out != want || s.SchemaVersion() != 3 {
			t.Fatalf("schema_migrations: %q, want %q", out, want)
		}
	})

	// Session-store traffic holding every data connection (the worst
	// case of heavy session load), each a commit that has passed its
	// fence and holds its lock, must not delay a lease renewal: the
	// renewal runs on the coordination pool, takes no lock a fence holds,
	// and keeps its deadline.
	t.Run("RenewUnderDataLoad", func(t *testing.T) {
		s := open(t, srv.DSN, Cluster(t), "a", "")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := s.NewSession(ctx, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		epoch, err := s.Campaign(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := s.SessionDB()
		var txs []*sql.Tx
		defer func() {
			for _, tx := range txs {
				_ = tx.Rollback()
			}
		}()
		for data.Stats().InUse < data.Stats().MaxOpenConnections {
			tx, err := data.BeginTx(ctx, nil)
			if err != nil {
				t.Fatalf("hold a data connection: %v", err)
			}
			txs = append(txs, tx)
			if err := s.SessionFence(ctx, tx, "a", epoch); err != nil {
				t.Fatalf("a session commit's fence: %v", err)
			}
		}
		// The data pool is exhausted: one more data call would wait.
		busy, stop := context.WithTimeout(ctx, 200*time.Millisecond)
		defer stop()
		if _, err := data.Conn(busy); err == nil {
			t.Fatal("the data pool gave out a connection beyond its limit; the test holds none")
		}
		for i := range 5 {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			start := time.Now()
			_, err := s.Renew(rctx)
			rcancel()
			if err != nil {
				t.Fatalf("renewal %d with every data connection (%d) busy: %v after %v; want it within its 1 s deadline", i, len(txs), err, time.Since(start))
			}
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
