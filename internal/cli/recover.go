package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	hnode "github.com/haven-ha/haven/internal/node"
	"github.com/haven-ha/haven/internal/store/etcdstore"
	"github.com/haven-ha/haven/internal/store/storedial"
)

// runRecover is `haven recover`: rebuild a cluster whose majority is lost
// for good from the one surviving member, without epochs going backwards.
func runRecover(args []string, out, errw io.Writer) int {
	fs := newFlags("recover", errw)
	cfgPath, node := configFlag(fs), nodeFlag(fs)
	minEpoch := fs.Int64("min-epoch", 0, "an epoch you know was issued (the highest haven_leader_epoch your monitoring saw); epochs after the recovery are above it")
	margin := fs.Int64("margin", 1000, "added above the survivor's revision and --min-epoch: writes the lost members may have committed without the survivor (1 to 1000000)")
	yes := fs.Bool("yes", false, "do it: the other members are lost for good (without it, recover only says what it would do)")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	cfg, code := loadConfig(*cfgPath, errw)
	if cfg == nil {
		return code
	}
	if !requireNode(cfg, *node, errw) {
		return exitUsage
	}
	if *minEpoch < 0 || *margin < 1 || *margin > 1_000_000 {
		fmt.Fprintln(errw, "haven recover: --min-epoch must be >= 0 and --margin from 1 to 1000000")
		return exitUsage
	}
	if !*yes {
		fmt.Fprintf(out, `haven recover rebuilds the cluster %s from %s alone: its etcd member restarts as the only
member of a new cluster with its own data (etcd's force-new-cluster), and the epoch counter is
raised by %d above the highest epoch it knows, so no epoch is ever issued twice.
Do it only when the other members are lost for good: a lost member that comes back with its old
data must not be started (wipe its data directory and add it with haven members add).
Stop the agent on %s first, then run again with --yes.
`, cfg.Cluster, *node, *margin, *node)
		return exitOK
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := hnode.Recover(ctx, cfg, *node, hnode.RecoverOptions{MinEpoch: ha.Epoch(*minEpoch), Margin: ha.Epoch(*margin), Who: operatorName()}, newLogger(cfg, errw))
	if err != nil {
		fmt.Fprintf(errw, "haven recover: %v\n", err)
		if k := ha.KindOf(err); k == ha.KindInvalid || k == ha.KindConflict {
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(out, "recovered: %s is the only member now (its revision was %d); every epoch from now on is above %d.\n", *node, res.Revision, res.Floor)
	fmt.Fprintf(out, "Next:\n  1. start the agent on %s (systemctl start haven): it becomes active on its own\n", *node)
	fmt.Fprintln(out, "  2. for each lost node, on a clean machine or after deleting its data directory:")
	for _, n := range cfg.Nodes {
		if n.Name != *node {
			fmt.Fprintf(out, "       haven members add --config %s %s   then start its agent (data dir %s must be empty)\n", cfg.Path, n.Name, filepath.Join(cfg.DataDir, n.Name))
		}
	}
	return exitOK
}

// runSnapshot is `haven store snapshot save FILE`: an etcd snapshot of the
// store (embedded or external etcd).
func runSnapshot(args []string, out, errw io.Writer) int {
	if len(args) > 0 && args[0] == "restore" {
		return runRestore(args[1:], out, errw)
	}
	if len(args) == 0 || args[0] != "save" {
		fmt.Fprintln(errw, "usage: haven store snapshot save --config FILE OUT.db\n       haven store snapshot restore --config FILE --node NODE [--force] [--min-epoch N] [--margin N] IN.db")
		return exitUsage
	}
	fs := newFlags("store snapshot save", errw)
	cfgPath := configFlag(fs)
	if code, ok := parse(fs, args[1:], 1); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(errw, "usage: haven store snapshot save --config FILE OUT.db")
		return exitUsage
	}
	cfg, code := loadConfig(*cfgPath, errw)
	if cfg == nil {
		return code
	}
	if b := cfg.Store.Backend; b == config.BackendPostgres || b == config.BackendMySQL {
		fmt.Fprintf(errw, "haven store snapshot: store.backend is %s: back it up with the database's own tools (pg_dump / mysqldump of the %s tables, or your database backups); they hold everything haven keeps\n", b, "haven_")
		return exitUsage
	}
	return saveSnapshot(cfg, fs.Arg(0), out, errw)
}

func saveSnapshot(cfg *config.Config, path string, out, errw io.Writer) int {
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	st, err := storedial.Open(ctx, cfg, config.Node{})
	if err != nil {
		fmt.Fprintf(errw, "haven store snapshot: connect to the %s store: %v\n", cfg.Store.Backend, err)
		return exitFailure
	}
	defer closeTool(st)
	es, ok := st.(*etcdstore.Store)
	if !ok {
		fmt.Fprintf(errw, "haven store snapshot: the %s store takes no etcd snapshot\n", cfg.Store.Backend)
		return exitUsage
	}
	tmp := path + ".part"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		fmt.Fprintf(errw, "haven store snapshot: %v\n", err)
		return exitUsage
	}
	n, rev, err := es.Snapshot(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		fmt.Fprintf(errw, "haven store snapshot: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(out, "saved %s: %d bytes, store revision (highest epoch) %d\n", path, n, rev)
	return exitOK
}

// restoreMargin is how far above the snapshot's revision epochs start
// after a restore unless told otherwise: etcd's advice for
// --bump-revision, far more than a cluster writes between two backups.
const restoreMargin = 1_000_000_000

// runRestore is `haven store snapshot restore`: rebuild a node's embedded
// etcd member from a snapshot, the rest of the cluster lost or stopped.
func runRestore(args []string, out, errw io.Writer) int {
	const usage = "usage: haven store snapshot restore --config FILE --node NODE [--force] [--min-epoch N] [--margin N] IN.db"
	fs := newFlags("store snapshot restore", errw)
	cfgPath, node := configFlag(fs), nodeFlag(fs)
	force := fs.Bool("force", false, "move the node's existing etcd data directory aside (to DIR.before-restore-TIME) instead of refusing")
	minEpoch := fs.Int64("min-epoch", 0, "an epoch you know was issued (the highest haven_leader_epoch your monitoring saw); epochs after the restore are above it")
	margin := fs.Int64("margin", restoreMargin, "epochs after the restore start this far above the snapshot's revision and --min-epoch (and at least at the time in microseconds since 1970): the cluster went on after the snapshot (1 to 1e15)")
	if code, ok := parse(fs, args, 1); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(errw, usage)
		return exitUsage
	}
	cfg, code := loadConfig(*cfgPath, errw)
	if cfg == nil {
		return code
	}
	if !requireNode(cfg, *node, errw) {
		return exitUsage
	}
	if *minEpoch < 0 || *margin < 1 || *margin > 1e15 {
		fmt.Fprintln(errw, "haven store snapshot restore: --min-epoch must be >= 0 and --margin from 1 to 1e15")
		return exitUsage
	}
	if b := cfg.Store.Backend; b == config.BackendPostgres || b == config.BackendMySQL {
		fmt.Fprintf(errw, "haven store snapshot restore: store.backend is %s: restore the database's own backup of the haven_ tables, then raise the epoch counter (docs/deploy.md, Backup)\n", b)
		return exitUsage
	}
	if live := liveOthers(cfg, *node); len(live) > 0 {
		fmt.Fprintf(errw, "haven store snapshot restore: %s answer: stop the agent on every node first (a restore replaces the whole cluster's data; a node still running with its old data would form a second cluster). If only %s lost its data and the others run, do not restore: haven members remove %s, empty its data directory, haven members add %s\n", strings.Join(live, ", "), *node, *node, *node)
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := hnode.Restore(ctx, cfg, *node, hnode.RestoreOptions{Snapshot: fs.Arg(0), MinEpoch: ha.Epoch(*minEpoch), Margin: ha.Epoch(*margin), Force: *force, Who: operatorName()}, newLogger(cfg, errw))
	if err != nil {
		fmt.Fprintf(errw, "haven store snapshot restore: %v\n", err)
		if k := ha.KindOf(err); k == ha.KindInvalid || k == ha.KindConflict {
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(out, "restored %s from %s: snapshot revision %d, %d keys; %s is the only member now and every epoch from now on is above %d.\n", *node, fs.Arg(0), res.SnapshotRevision, res.Keys, *node, res.Floor)
	if res.MovedAside != "" {
		fmt.Fprintf(out, "The data directory that was there is in %s: delete it once the cluster serves.\n", res.MovedAside)
	}
	fmt.Fprintf(out, "Next:\n  1. on every other node, keep the agent stopped and delete its data directory: a node started with its old data would serve the old cluster\n")
	fmt.Fprintf(out, "  2. start the agent on %s (systemctl start haven): it becomes active on its own, with the snapshot's data\n", *node)
	fmt.Fprintln(out, "  3. for each other node, one at a time:")
	for _, n := range cfg.Nodes {
		if n.Name != *node {
			fmt.Fprintf(out, "       haven members add --config %s %s   then start its agent (data dir %s must be empty)\n", cfg.Path, n.Name, filepath.Join(cfg.DataDir, n.Name))
		}
	}
	return exitOK
}

// liveOthers names the other nodes whose agent API or etcd client port
// accepts connections.
func liveOthers(cfg *config.Config, self string) []string {
	var live []string
	for _, n := range cfg.Nodes {
		if n.Name == self {
			continue
		}
		for _, addr := range []string{n.API, n.Client} {
			if addr == "" {
				continue
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				live = append(live, n.Name+" ("+addr+")")
				break
			}
		}
	}
	return live
}
