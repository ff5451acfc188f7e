package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
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
	for _, addr := range []string{node.Peer, node.Client, node.API} {
		if addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return res, ha.Errorf(ha.KindConflict, "%s is in use (%v): stop the agent on %s first (systemctl stop haven)", addr, err, name)
		}
		ln.Close()
	}
	member, err := etcdstore.StartMember(etcdstore.MemberConfig{
		Name:            name,
		DataDir:         dataDir,
		Peer:            node.Peer,
		Client:          node.Client,
		Cluster:         map[string]string{name: node.Peer},
		Token:           cfg.Cluster,
		Heartbeat:       cfg.Timing.EtcdHeartbeat,
		Election:        cfg.Timing.EtcdElection,
		LogFile:         filepath.Join(cfg.DataDir, name, "etcd.log"),
		ForceNewCluster: true,
	})
	if err != nil {
		return res, err
	}
	defer member.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := member.Ready(rctx); err != nil {
		return res, fmt.Errorf("the member of %s did not start alone: %w (see %s)", name, err, filepath.Join(cfg.DataDir, name, "etcd.log"))
	}
	store, err := etcdstore.Dial(cfg.Cluster, []string{node.Client}, 5*time.Second)
	if err != nil {
		return res, err
	}
	defer store.Close()
	if res.Revision, err = store.MaxEpoch(rctx); err != nil {
		return res, err
	}
	// No agent runs (the survivor's is stopped, the others are lost): the
	// sessions in the data are the dead agents', and the active's may be
	// among them. Revoke them now rather than wait for their TTLs, which
	// a new etcd leader extends.
	if n, err := store.RevokeAllLeases(rctx); err != nil {
		return res, err
	} else {
		log.Info("recover: revoked the lost agents' sessions", "leases", n)
	}
	res.Floor = max(res.Revision, o.MinEpoch) + o.Margin
	log.Info("recover: raising the epoch counter", "revision", res.Revision, "floor", res.Floor)
	if err := store.RaiseEpoch(rctx, res.Floor); err != nil {
		return res, err
	}
	ev := ha.Event{Time: clock.Real{}.Now(), Node: name, Kind: "recover", Epoch: res.Floor, Who: o.Who,
		Reason: fmt.Sprintf("rebuilt from %s alone (force-new-cluster); revision %d, epochs now above %d", name, res.Revision, res.Floor)}
	if err := store.AppendEvent(rctx, ev); err != nil {
		log.Warn("recover: record the event", "err", err)
	}
	return res, nil
}
