package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/etcdstore"
)

// RecoverOptions say how `haven recover` rebuilds a cluster from one
// surviving embedded etcd member.
type RecoverOptions struct {
	// MinEpoch is an epoch the operator knows was issued (e.g. the highest
	// haven_leader_epoch their monitoring saw); every epoch after the
	// recovery is above it and above the survivor's own revision.
	MinEpoch ha.Epoch
	// Margin is added on top: the lost members may have committed writes
	// the survivor never received.
	Margin ha.Epoch
	Who    string // for the history
}

// RecoverResult is what Recover did.
type RecoverResult struct {
	Revision ha.Epoch // the survivor's revision when it restarted alone
	Floor    ha.Epoch // every epoch from now on is above it
}

// Recover restarts node's embedded etcd member, whose agent must be
// stopped, as the only member of a new cluster with its data (etcd's
// force-new-cluster), raises the epoch counter above everything that may
// have been issued, records the recovery in the history and stops the
// member again. Starting the node's agent then serves again; the lost
// nodes come back with `haven members add` and empty data directories.
func Recover(ctx context.Context, cfg *config.Config, name string, o RecoverOptions, log *slog.Logger) (RecoverResult, error) {
	var res RecoverResult
	node, ok := cfg.NodeByName(name)
	if !ok {
		return res, ha.Errorf(ha.KindInvalid, "node %q is not in %s", name, cfg.Path)
	}
	if cfg.Store.External() {
		return res, ha.Errorf(ha.KindInvalid, "store.backend is %s: haven recover rebuilds the embedded etcd only; recover an external store with its own tools, then restart the agents", cfg.Store.Backend)
	}
	dataDir := etcdstore.DataDir(cfg.DataDir, name)
	if !etcdstore.HasData(dataDir) {
		return res, ha.Errorf(ha.KindInvalid, "%s holds no etcd data: run haven recover on the surviving node, the one whose data is intact", dataDir)
	}
	if err := portsFree(node); err != nil {
		return res, err
	}
	why := func(rev ha.Epoch) (ha.Epoch, string) {
		res.Revision = rev
		res.Floor = max(rev, o.MinEpoch) + o.Margin
		return res.Floor, fmt.Sprintf("rebuilt from %s alone (force-new-cluster); revision %d, epochs now above %d", name, rev, res.Floor)
	}
	err := settleAlone(ctx, cfg, node, true, "recover", o.Who, why, log)
	return res, err
}

// portsFree refuses to touch a node whose agent still runs.
func portsFree(node config.Node) error {
	for _, addr := range []string{node.Peer, node.Client, node.API} {
		if addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return ha.Errorf(ha.KindConflict, "%s is in use (%v): stop the agent on %s first (systemctl stop haven)", addr, err, node.Name)
		}
		ln.Close()
	}
	return nil
}

// settleAlone starts node's embedded etcd member as the only member of its
// cluster (forceNew: etcd's force-new-cluster on the data it has), revokes
// every session in it (no agent runs: they are the dead agents', the lost
// active's among them), raises the epoch counter to the floor that why
// gives for the member's revision, records a kind event with why's reason,
// and stops the member again.
func settleAlone(ctx context.Context, cfg *config.Config, node config.Node, forceNew bool, kind, who string, why func(rev ha.Epoch) (ha.Epoch, string), log *slog.Logger) error {
	var files config.TLSFiles
	if cfg.TLS.Enabled() {
		files = cfg.TLS.For(node.Name)
	}
	logFile := filepath.Join(cfg.DataDir, node.Name, "etcd.log")
	member, err := etcdstore.StartMember(etcdstore.MemberConfig{
		Name:            node.Name,
		DataDir:         etcdstore.DataDir(cfg.DataDir, node.Name),
		Peer:            node.Peer,
		Client:          node.Client,
		Cluster:         map[string]string{node.Name: node.Peer},
		Token:           cfg.Cluster,
		Heartbeat:       cfg.Timing.EtcdHeartbeat,
		Election:        cfg.Timing.EtcdElection,
		LogFile:         logFile,
		ForceNewCluster: forceNew,
		TLS:             etcdstore.TLSFiles{CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key},
	})
	if err != nil {
		return err
	}
	defer member.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := member.Ready(rctx); err != nil {
		return fmt.Errorf("the member of %s did not start alone: %w (see %s)", node.Name, err, logFile)
	}
	store, err := etcdstore.DialOptions(cfg.Cluster, etcdstore.Options{Endpoints: []string{node.Client}, DialTimeout: 5 * time.Second, CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key})
	if err != nil {
		return err
	}
	defer store.Close()
	rev, err := store.MaxEpoch(rctx)
	if err != nil {
		return err
	}
	// Revoke the sessions now rather than wait for their TTLs, which a
	// new etcd leader extends.
	n, err := store.RevokeAllLeases(rctx)
	if err != nil {
		return err
	}
	log.Info(kind+": revoked the lost agents' sessions", "leases", n)
	floor, reason := why(rev)
	log.Info(kind+": raising the epoch counter", "revision", rev, "floor", floor)
	if err := store.RaiseEpoch(rctx, floor); err != nil {
		return err
	}
	ev := ha.Event{Time: clock.Real{}.Now(), Node: node.Name, Kind: kind, Epoch: floor, Who: who, Reason: reason}
	if err := store.AppendEvent(rctx, ev); err != nil {
		log.Warn(kind+": record the event", "err", err)
	}
	return nil
}

// RestoreOptions say how `haven store snapshot restore` rebuilds a node's
// embedded etcd member from a snapshot.
type RestoreOptions struct {
	Snapshot string
	// MinEpoch and Margin as in RecoverOptions: the cluster went on after
	// the snapshot, so every epoch after the restore is Margin above the
	// snapshot's revision and MinEpoch.
	MinEpoch, Margin ha.Epoch
	Force            bool // move an existing data directory aside
	Who              string
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	etcdstore.RestoreResult
	Floor ha.Epoch // every epoch from now on is above it
}

// Restore rebuilds node's embedded etcd data directory from a snapshot as
// the only member of a new cluster (etcd's snapshot restore), bumps the
// revision above every epoch the snapshot's cluster, or a cluster restored
// before from the same snapshot, may have issued (etcdstore.RestoreSnapshot),
// revokes the sessions in it, records a restore event and stops the
// member again. The node's agent must be stopped. Starting it then serves
// again with the snapshot's data; the other nodes come back with empty
// data directories and `haven members add`.
func Restore(ctx context.Context, cfg *config.Config, name string, o RestoreOptions, log *slog.Logger) (RestoreResult, error) {
	var res RestoreResult
	node, ok := cfg.NodeByName(name)
	if !ok {
		return res, ha.Errorf(ha.KindInvalid, "node %q is not in %s", name, cfg.Path)
	}
	if cfg.Store.External() {
		return res, ha.Errorf(ha.KindInvalid, "store.backend is %s: haven store snapshot restore rebuilds the embedded etcd only; restore an external etcd with etcdutl snapshot restore on its members, then restart the agents", cfg.Store.Backend)
	}
	if node.Peer == "" || node.Client == "" {
		return res, ha.Errorf(ha.KindInvalid, "node %s runs no etcd member (no peer/client address in %s): restore onto a node that does", name, cfg.Path)
	}
	if _, err := os.Stat(o.Snapshot); err != nil {
		return res, ha.Errorf(ha.KindInvalid, "snapshot: %v", err)
	}
	if err := portsFree(node); err != nil {
		return res, err
	}
	r, err := etcdstore.RestoreSnapshot(etcdstore.RestoreOptions{
		Snapshot: o.Snapshot, Name: name, DataDir: etcdstore.DataDir(cfg.DataDir, name),
		Peer: node.Peer, Token: cfg.Cluster, TLS: cfg.TLS.Enabled(),
		MinEpoch: o.MinEpoch, Margin: o.Margin, Force: o.Force, Now: clock.Real{}.Now(),
	})
	res.RestoreResult = r
	if errors.Is(err, etcdstore.ErrDataDirExists) {
		return res, ha.Errorf(ha.KindConflict, "%v", err)
	}
	if err != nil {
		return res, ha.Errorf(ha.KindInvalid, "%v", err)
	}
	log.Info("restore: data directory rebuilt", "snapshot", o.Snapshot, "snapshot_revision", r.SnapshotRevision, "revision", r.Revision)
	why := func(rev ha.Epoch) (ha.Epoch, string) {
		res.Floor = max(rev, r.Revision)
		return res.Floor, fmt.Sprintf("restored %s from snapshot %s (revision %d); epochs now above %d", name, filepath.Base(o.Snapshot), r.SnapshotRevision, res.Floor)
	}
	err = settleAlone(ctx, cfg, node, false, "restore", o.Who, why, log)
	return res, err
}
