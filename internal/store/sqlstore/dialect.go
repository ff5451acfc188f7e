package sqlstore

import (
	"context"
	"database/sql"
	"time"
)

// Dialect is what differs between the SQL databases: the schema, the
// spelling of a few statements, how a duplicate key shows, where counters
// live, and whether a change can wake watchers. The algorithm (Store) and
// its safety argument (the package doc) never depend on which one it is.
// Queries are written with ? placeholders; Rebind turns them into the
// database's.
type Dialect interface {
	// Name is the database's kind: "postgres" or "mysql".
	Name() string
	// Schema returns the statement creating the schema_migrations table
	// (if it does not exist) and, for each schema version from 1, the
	// statements that migrate to it. A dialect is made for one table
	// prefix (TableNames).
	Schema() (migrations string, versions [][]string)
	// Exclusive runs f holding the lock that serializes migrations named
	// lock (agents that start together migrate once): on a transaction
	// where DDL is transactional, else on one connection.
	Exclusive(ctx context.Context, db *sql.DB, lock string, f func(q Querier) error) error
	// Columns names the columns whose names differ between the schemas.
	Columns() Columns

	// Rebind turns a query's ? placeholders into the database's.
	Rebind(query string) string
	// Now is an SQL expression for the database's clock, to the microsecond.
	Now() string
	// After is an SQL expression for Now() plus n microseconds, n an SQL
	// expression (a placeholder or a column expression).
	After(n string) string
	// IfAbsent is the suffix that makes an INSERT of a row whose key exists
	// insert nothing (0 rows) instead of failing; "" if such an insert
	// fails with an error Duplicate recognises and that leaves the
	// transaction usable.
	IfAbsent() string
	// Upsert is the suffix that makes an INSERT of a row whose key (the
	// columns conflict) exists set the columns set from the new row.
	Upsert(conflict, set []string) string
	// Duplicate reports whether err is a duplicate key error.
	Duplicate(err error) bool
	// ShareLock is the suffix of a SELECT that share-locks the rows it
	// reads of the table aliased alias.
	ShareLock(alias string) string
	// Insert runs an INSERT into a table with an auto-increment id column
	// and returns the new row's id.
	Insert(ctx context.Context, q Querier, query string, args ...any) (int64, error)

	// Next increments counter c and returns its new value, inside the
	// caller's transaction; values only grow, and are never handed out
	// twice, even by a transaction that rolls back.
	Next(ctx context.Context, q Querier, c Counter) (int64, error)
	// Current returns the last value Next returned of c (0 if none).
	Current(ctx context.Context, q Querier, c Counter) (int64, error)
	// Raise makes every later Next of c return more than v; it never
	// lowers c.
	Raise(ctx context.Context, q Querier, c Counter, v int64) error

	// Changed bumps the cluster's rev (the change counter) inside the
	// transaction of q and, where the database can, tells the cluster's
	// watchers at commit that it changed and what the rev is now (else
	// watchers poll). One statement: it is on the path of every change.
	Changed(ctx context.Context, q Querier, cluster string) error
	// Broken reports whether err says that the server went away (a
	// restart, a cut), so that every idle connection is broken too.
	Broken(err error) bool
}

// Querier is what a statement runs on: *sql.DB, *sql.Tx or *sql.Conn.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Counter names one of the database-wide counters.
type Counter int

// The counters.
const (
	// EpochCounter: the fencing epochs, drawn by Campaign.
	EpochCounter Counter = iota
	// DataRevCounter: the revisions of fenced writes.
	DataRevCounter
)

// Columns are the names of columns that the schemas spell differently.
type Columns struct {
	// Key is the data table's key column.
	Key string
	// TTL is the sessions table's ttl column, in units of TTLUnit.
	TTL     string
	TTLUnit time.Duration
}

// Tables are the qualified table names (the prefix and the table), and the
// notification channel.
type Tables struct {
	Migrations, Clusters, Sessions, Leader, Nodes  string
	Maintenance, Switchover, Events, Data, DataIDs string
	Props                                          string
	// Counters is MySQL's table of counter rows; Epoch and DataRev are
	// PostgreSQL's sequences.
	Counters, Epoch, DataRev string
	// Channel is PostgreSQL's notification channel.
	Channel string
}

// TableNames returns the tables of prefix (checked by TablePrefix).
func TableNames(prefix string) Tables {
	return Tables{
		Migrations:  prefix + "schema_migrations",
		Clusters:    prefix + "clusters",
		Sessions:    prefix + "sessions",
		Leader:      prefix + "leader",
		Nodes:       prefix + "nodes",
		Maintenance: prefix + "maintenance",
		Switchover:  prefix + "switchover",
		Events:      prefix + "events",
		Data:        prefix + "data",
		DataIDs:     prefix + "data_ids",
		Props:       prefix + "props",
		Counters:    prefix + "counters",
		Epoch:       prefix + "epoch",
		DataRev:     prefix + "data_rev",
		Channel:     prefix + "changes",
	}
}
