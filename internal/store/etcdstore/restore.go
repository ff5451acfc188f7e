package etcdstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// RestoreOptions say how to rebuild one member's data directory from an
// etcd snapshot (`haven store snapshot restore`).
type RestoreOptions struct {
	Snapshot string // the file `haven store snapshot save` or `etcdctl snapshot save` wrote
	Name     string // the member
	DataDir  string // its data directory, as DataDir returns it
	Peer     string // its peer host:port
	Token    string // the cluster name, as StartMember takes it
	TLS      bool   // the peer listener is https
	// The restored revision is bumped to Margin above the greater of
	// MinEpoch and the snapshot's revision: the cluster went on after the
	// snapshot, and every epoch it issued since must stay below.
	MinEpoch, Margin ha.Epoch
	// Now is the restore's time. The revision is bumped to at least its
	// Unix time in microseconds, so a second restore of the same snapshot
	// later still starts above every revision the first one's cluster
	// can have reached: etcd commits far fewer than a million writes a
	// second.
	Now time.Time
	// Force moves an existing data directory aside (DataDir.before-restore-TIME)
	// instead of refusing.
	Force bool
}

// RestoreResult is what RestoreSnapshot did.
type RestoreResult struct {
	SnapshotRevision ha.Epoch // the revision the snapshot was taken at
	Revision         ha.Epoch // the member's revision after the restore
	Keys             int      // keys in the snapshot (all revisions)
	MovedAside       string   // where the data directory that was there went, if any
	MovedRevision    ha.Epoch // its revision, which the restore stays above
}

// ErrDataDirExists is RestoreSnapshot's answer for a data directory that
// is already there without Force.
var ErrDataDirExists = errors.New("the member's data directory exists")

// RestoreSnapshot rebuilds a member's data directory from a snapshot, as
// `etcdutl snapshot restore` does (etcd's own code, same version as the
// embedded member): the member becomes the only member of a new cluster
// with the snapshot's keys, its revision bumped by Margin above the
// snapshot's, MinEpoch and the replaced data's, and at least to Now in
// microseconds, and marked compacted (etcdutl's --bump-revision and
// --mark-compacted), so epochs never go backwards. The snapshot's
// integrity hash must match. The directory is built beside the target and
// renamed into place, so a failed restore leaves nothing behind.
func RestoreSnapshot(o RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	if o.Margin < 1 {
		return res, fmt.Errorf("a restore bumps the revision by a margin of at least 1, not %d", o.Margin)
	}
	if _, err := os.Stat(o.DataDir); err == nil && !o.Force {
		return res, fmt.Errorf("%w: %s; restore only into an empty place (pass --force to move it aside to %s.before-restore-TIME)", ErrDataDirExists, o.DataDir, o.DataDir)
	}
	lg := zap.NewNop()
	m := snapshot.NewV3(lg)
	st, err := m.Status(o.Snapshot)
	if err != nil {
		return res, fmt.Errorf("%s fails etcd's integrity check (not an etcd snapshot, or damaged): %w", o.Snapshot, err)
	}
	res.SnapshotRevision, res.Keys = ha.Epoch(st.Revision), st.TotalKey
	base := max(res.SnapshotRevision, o.MinEpoch)
	if _, err := os.Stat(o.DataDir); err == nil {
		// The data in the way (--force) may be of a cluster restored
		// before from this very snapshot: stay above its revision too.
		old, err := m.Status(filepath.Join(o.DataDir, "member", "snap", "db"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return res, fmt.Errorf("read the revision of the data in %s, to stay above it: %w (move it away yourself if it is damaged)", o.DataDir, err)
		}
		res.MovedRevision = ha.Epoch(old.Revision)
		base = max(base, res.MovedRevision)
	}
	target := max(base+o.Margin, ha.Epoch(o.Now.UnixMicro()))
	tmp := o.DataDir + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return res, err
	}
	if err := os.MkdirAll(filepath.Dir(o.DataDir), 0o700); err != nil {
		return res, fmt.Errorf("create %s: %w", filepath.Dir(o.DataDir), err)
	}
	scheme := "http://"
	if o.TLS {
		scheme = "https://"
	}
	err = m.Restore(snapshot.RestoreConfig{
		SnapshotPath:        o.Snapshot,
		Name:                o.Name,
		OutputDataDir:       tmp,
		PeerURLs:            []string{scheme + o.Peer},
		InitialCluster:      o.Name + "=" + scheme + o.Peer,
		InitialClusterToken: "haven-" + o.Token,
		RevisionBump:        uint64(target - res.SnapshotRevision),
		MarkCompacted:       true,
	})
	if err != nil {
		os.RemoveAll(tmp)
		if strings.HasPrefix(err.Error(), "expected sha256") {
			err = errors.New("its sha256 integrity hash does not match its content")
		}
		return res, fmt.Errorf("restore %s: etcd refused it (a damaged file, or one copied from a data directory, fails its integrity check; use one `haven store snapshot save` wrote): %w", o.Snapshot, err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		os.RemoveAll(tmp)
		return res, err
	}
	if _, err := os.Stat(o.DataDir); err == nil {
		res.MovedAside = o.DataDir + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(o.DataDir, res.MovedAside); err != nil {
			os.RemoveAll(tmp)
			return res, fmt.Errorf("move the old data directory aside: %w", err)
		}
	}
	if err := os.Rename(tmp, o.DataDir); err != nil {
		return res, fmt.Errorf("put the restored data directory in place: %w", err)
	}
	res.Revision = target
	return res, nil
}
