package recipes

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgLoad inserts rows through the proxy, one autocommit INSERT at a time,
// and remembers which committed. Bounded by stop() and maxPGInserts.
type pgLoad struct {
	dsn string

	tally
	committed []int64

	stopC chan struct{}
	once  sync.Once
	done  chan struct{}
}

const maxPGInserts = 1_000_000

func startPGLoad(dsn string) *pgLoad {
	l := &pgLoad{dsn: dsn, stopC: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *pgLoad) run() {
	defer close(l.done)
	var c *pgx.Conn
	defer func() {
		if c != nil {
			c.Close(context.Background())
		}
	}()
	fail := func(err error) { l.fail(err.Error()) }
	for i := int64(1); i <= maxPGInserts; i++ {
		select {
		case <-l.stopC:
			return
		default:
		}
		if c == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var err error
			c, err = pgx.Connect(ctx, l.dsn)
			cancel()
			if err != nil {
				c = nil
				fail(err)
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Exec(ctx, "insert into t(id) values($1)", i)
		cancel()
		if err != nil {
			fail(err)
			c.Close(context.Background())
			c = nil
			continue
		}
		l.mu.Lock()
		l.committed = append(l.committed, i)
		l.okAt = append(l.okAt, time.Now())
		l.mu.Unlock()
	}
}

func (l *pgLoad) stop() {
	l.once.Do(func() { close(l.stopC) })
	<-l.done
}

// pgMissing counts the committed ids that the server at addr lacks.
func pgMissing(t *testing.T, addr string, ids []int64) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, "postgres://postgres@"+addr+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "select count(*) from unnest($1::bigint[]) as c(id) where not exists (select 1 from t where t.id = c.id)", ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPostgresRecipe runs examples/postgres: PostgreSQL 15 from Debian
// with synchronous streaming replication, promoted by haven's hook,
// fenced by an immediate shutdown and rejoined with pg_rewind, and a
// client inserting rows through haven's proxy (TCP mode) across kill -9 of
// the primary's postmaster, kill -9 of its agent and a switchover. Every
// committed row must survive.
func TestPostgresRecipe(t *testing.T) {
	r := newRecipe(t, "postgres")
	apis := []string{"127.0.0.1:7131", "127.0.0.1:7132"}
	pgAddr := map[string]string{"n1": r.addr("127.0.0.1:5441"), "n2": r.addr("127.0.0.1:5442")}
	r.startCluster(apis, 2*startTimeout, "w1")
	dsn := "postgres://postgres@" + r.addr("127.0.0.1:5440") + "/postgres?sslmode=disable&connect_timeout=3"
	waitFor(t, 20*time.Second, "the table created through the proxy", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return false
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "create table if not exists t (id bigint primary key)")
		return err == nil
	})
	load := startPGLoad(dsn)
	defer load.stop()
	waitFor(t, 20*time.Second, "the client's first commits", func() bool { ok, _ := load.counts(time.Time{}, time.Now()); return ok > 20 })

	var results []result
	measure := func(fault, from string, t0 time.Time, then func()) {
		t.Helper()
		next := other(from)
		r.waitActive(apis, startTimeout, from, next)
		if then != nil {
			then()
		}
		r.waitActive(apis, 2*startTimeout, "", "n1", "n2")
		since := time.Now()
		waitFor(t, 30*time.Second, "a commit after "+fault, func() bool { ok, _ := load.counts(since, time.Now().Add(time.Hour)); return ok > 0 })
		end := time.Now()
		ok, errs := load.counts(t0, end)
		load.mu.Lock()
		ids := append([]int64(nil), load.committed...)
		load.mu.Unlock()
		lost := pgMissing(t, pgAddr[next], ids)
		gap, _ := load.outage(t0, end)
		results = append(results, result{fault: fault, from: from, to: next, failover: gap, requests: ok + errs, errors: errs,
			lost: fmt.Sprintf("%d of %d committed rows", lost, len(ids))})
		if lost > 0 {
			t.Errorf("%s: %d committed rows are missing on the new primary %s", fault, lost, next)
		}
	}

	r.threeFaults(apis, "primary", "PostgreSQL", pgAddr, nil, measure)

	load.stop()
	report(t, "postgres", results)
	load.mu.Lock()
	t.Logf("client's last error: %s", load.lastErr)
	load.mu.Unlock()
}
