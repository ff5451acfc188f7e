package ha

import "context"

// SessionRecord is one key of the replicated session store (see package
// sessions): its value and absolute expiry, or its removal.
type SessionRecord struct {
	Key      string
	Value    []byte
	ExpireAt int64 // Unix milliseconds; 0: never
	Deleted  bool
	Rev      int64 // the store's revision of this change (loads and watches)
	Hash     bool  // Value is a hash's fields, encoded by package sessions
}

// SessionData is what the session store needs from a backend: a
// consistent copy, the changes after it, and fenced batches of writes.
type SessionData interface {
	// LoadSessions returns every record (none deleted) as of one revision,
	// read linearizably, and that revision.
	LoadSessions(ctx context.Context) (recs []SessionRecord, rev int64, err error)
	// WatchSessions calls fn with the changes after rev, in order, until
	// ctx ends or the watch fails (then the caller loads again).
	WatchSessions(ctx context.Context, rev int64, fn func([]SessionRecord)) error
	// CommitSessions applies recs in one transaction if node holds the
	// active role at epoch, and returns the revision. A batch refused by
	// the fence returns ErrNotLeader and changed nothing; any other error
	// leaves the outcome unknown. Each key appears at most once in recs.
	CommitSessions(ctx context.Context, node string, epoch Epoch, recs []SessionRecord) (rev int64, err error)
	// CommitSessionsIf applies recs in one transaction if every key of
	// expect is still at that revision (0: absent); ok is false, and
	// nothing changed, when one is not. For active-active, where several
	// nodes write and no epoch fences them.
	CommitSessionsIf(ctx context.Context, recs []SessionRecord, expect map[string]int64) (rev int64, ok bool, err error)
	// GetSessions reads keys now (linearizably); an absent key comes back
	// Deleted, with the store's revision.
	GetSessions(ctx context.Context, keys []string) ([]SessionRecord, error)
}

// SessionStats is the size of one node's copy of the session store, as it
// publishes it in its status record.
type SessionStats struct {
	Listen   string `json:"listen"`
	Keys     int    `json:"keys"`
	Bytes    int64  `json:"bytes"`
	Writable bool   `json:"writable"` // this node takes writes (the active)
	// Layout: how the store holds the sessions as this node last loaded
	// them, "keys" (one store key per session) or "packed" (a log and
	// snapshots, etcd in active-passive; docs/sessions.md); empty from
	// versions before the packed layout.
	Layout string `json:"layout,omitempty"`
	// Layouts: the layouts this node's version and store read. The active
	// migrates from keys to packed only once every node's record lists
	// packed (sessions.PackedReady): an older node promoted afterwards
	// would find an empty store.
	Layouts []string `json:"layouts,omitempty"`
	// Waiting: why the store is not packed yet although this node could
	// read it ("waiting for node n3 to run a version that reads the
	// packed layout"); empty once packed or where packing does not apply.
	Waiting string `json:"waiting,omitempty"`
	// Warning: the store is packed and a node's record says it cannot
	// read it (sessions.PackedUnreadable): promoted, it would serve an
	// empty store.
	Warning string `json:"warning,omitempty"`
	// Log: the packed layout's log and snapshot, when the node's store
	// keeps one (etcd, not active-active).
	Log *SessionLogStats `json:"log,omitempty"`
}

// SessionLogStats describes how the session store's data sits in the
// coordination store: one key per session ("keys") or the packed layout of
// active-passive on etcd ("packed": a snapshot and a log of group commits,
// docs/sessions.md). Zero fields where they do not apply.
type SessionLogStats struct {
	Layout        string `json:"layout"`         // "keys" or "packed"; "" before the first load
	LogEntries    int    `json:"log_entries"`    // log entries past the snapshot
	LogBytes      int64  `json:"log_bytes"`      // their values' bytes
	SnapshotKeys  int    `json:"snapshot_keys"`  // keys in the current snapshot
	SnapshotBytes int64  `json:"snapshot_bytes"` // its chunks' bytes
	SnapshotAt    int64  `json:"snapshot_at"`    // Unix ms it was written; 0: none
	Compactions   int64  `json:"compactions"`    // compactions this process finished
}

// SessionActiveLoader is a SessionData whose layout the active may change
// when it loads (etcd's packed layout, which it migrates to and compacts,
// fenced by its epoch). The session store calls it instead of LoadSessions
// when it loads as the active at epoch, after its promotion and before it
// accepts writes.
type SessionActiveLoader interface {
	LoadSessionsAsActive(ctx context.Context, node string, epoch Epoch) (recs []SessionRecord, rev int64, err error)
}
