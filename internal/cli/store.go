package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/storedial"
)

// storeDump is what `haven store export` writes and `haven store import`
// reads: what a cluster must keep when it moves to another store.
type storeDump struct {
	Format     string    `json:"format"`  // dumpFormat
	Version    int       `json:"version"` // 1
	Cluster    string    `json:"cluster"`
	Backend    string    `json:"backend"` // where it came from
	ExportedAt time.Time `json:"exported_at"`
	// Epoch is the source's epoch counter: every epoch it issued is at
	// most this, so the target must issue only greater ones.
	Epoch  ha.Epoch        `json:"epoch"`
	Nodes  []ha.NodeStatus `json:"nodes"`            // last record of every node, kept as history
	Events []ha.Event      `json:"events,omitempty"` // the history, when the source keeps one
	// What operators set and the cluster keeps: node properties (aliases)
	// and maintenance flags. A pending switchover is not carried: it is
	// bound to the source's epoch and expires in seconds.
	Props       map[string]ha.NodeProps `json:"props,omitempty"`
	Maintenance []string                `json:"maintenance,omitempty"`
}

const (
	dumpFormat    = "haven-store-dump"
	maxDumpEvents = 100000
)

func runStore(args []string, out, errw io.Writer) int {
	if len(args) > 0 && args[0] == "snapshot" {
		return runSnapshot(args[1:], out, errw)
	}
	if len(args) == 0 || (args[0] != "export" && args[0] != "import") {
		fmt.Fprintln(errw, "usage: haven store export --config FILE > dump.json\n       haven store import --config FILE < dump.json")
		return exitUsage
	}
	fs := newFlags("store "+args[0], errw)
	cfgPath := configFlag(fs)
	file := fs.String("file", "", "read the dump from this file instead of standard input (import)")
	force := fs.Bool("force", false, "import a dump of another cluster name (import)")
	if code, ok := parse(fs, args[1:], 0); !ok {
		return code
	}
	cfg, code := loadConfig(*cfgPath, errw)
	if cfg == nil {
		return code
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	st, err := storedial.Open(ctx, cfg, config.Node{})
	if err != nil {
		fmt.Fprintf(errw, "haven store %s: connect to the %s store: %v\n", args[0], cfg.Store.Backend, err)
		return exitFailure
	}
	defer closeTool(st)
	if args[0] == "export" {
		err = exportStore(ctx, cfg, st, out)
	} else {
		in := io.Reader(os.Stdin)
		if *file != "" {
			f, ferr := os.Open(*file)
			if ferr != nil {
				fmt.Fprintf(errw, "haven store import: %v\n", ferr)
				return exitUsage
			}
			defer f.Close()
			in = f
		}
		err = importStore(ctx, cfg, st, in, *force, errw)
	}
	if err != nil {
		fmt.Fprintf(errw, "haven store %s: %v\n", args[0], err)
		return exitFailure
	}
	return exitOK
}

// closeTool closes a store a tool opened without a session.
func closeTool(st storedial.Store) { _ = st.Close() }

func exportStore(ctx context.Context, cfg *config.Config, st storedial.Store, out io.Writer) error {
	d := storeDump{Format: dumpFormat, Version: 1, Cluster: cfg.Cluster, Backend: cfg.Store.Backend, ExportedAt: time.Now().UTC()}
	var err error
	if d.Epoch, err = st.MaxEpoch(ctx); err != nil {
		return err
	}
	if d.Nodes, err = st.Records(ctx); err != nil {
		return fmt.Errorf("read node records: %w", err)
	}
	if d.Events, err = st.Events(ctx, maxDumpEvents); err != nil {
		return err
	}
	// Properties and intents are in the store's snapshot.
	wctx, stop := context.WithCancel(ctx)
	snap, ok := <-st.Watch(wctx)
	stop()
	if !ok {
		return fmt.Errorf("read the store's snapshot: %w", context.Cause(ctx))
	}
	d.Props = snap.Props
	for n, on := range snap.Intents.Maintenance {
		if on {
			d.Maintenance = append(d.Maintenance, n)
		}
	}
	sort.Strings(d.Maintenance)
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

func importStore(ctx context.Context, cfg *config.Config, st storedial.Store, in io.Reader, force bool, errw io.Writer) error {
	var d storeDump
	if err := json.NewDecoder(in).Decode(&d); err != nil {
		return fmt.Errorf("read the dump: %w (give the output of `haven store export`)", err)
	}
	if d.Format != dumpFormat || d.Version != 1 {
		return fmt.Errorf("not a haven store dump of version 1 (format %q, version %d)", d.Format, d.Version)
	}
	if d.Cluster != cfg.Cluster && !force {
		return fmt.Errorf("the dump is of cluster %q but %s configures %q; import it into a config of that cluster, or pass --force", d.Cluster, cfg.Path, cfg.Cluster)
	}
	// Epochs never go backwards: the target's counter must reach the
	// source's before any agent campaigns on it.
	if err := st.RaiseEpoch(ctx, d.Epoch); err != nil {
		return err
	}
	if err := st.KeepRecords(ctx, d.Nodes); err != nil {
		return fmt.Errorf("keep node records: %w", err)
	}
	kept, err := importEvents(ctx, st, d.Events)
	if err != nil {
		return err
	}
	props, ok := st.(ha.Properties)
	switch {
	case ok:
		for n, p := range d.Props {
			if err := props.SetProps(ctx, n, p); err != nil {
				return err
			}
		}
	case len(d.Props) > 0:
		fmt.Fprintf(errw, "haven store import: the %s backend keeps no node properties; %d aliases not imported (set them again on each dashboard)\n", cfg.Store.Backend, len(d.Props))
	}
	if ops, ok := st.(ha.Operations); ok {
		for _, n := range d.Maintenance {
			if err := ops.SetMaintenance(ctx, n, true); err != nil {
				return err
			}
		}
	} else if len(d.Maintenance) > 0 {
		fmt.Fprintf(errw, "haven store import: the %s backend keeps no maintenance flags; put %s in maintenance again after the move\n", cfg.Store.Backend, strings.Join(d.Maintenance, ", "))
	}
	now, err := st.MaxEpoch(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(errw, "imported into %s: epoch counter %d (source %d), %d node records, %d events, %d node properties, %d in maintenance\n", cfg.Store.Backend, now, d.Epoch, len(d.Nodes), kept, len(d.Props), len(d.Maintenance))
	return nil
}

// importEvents appends the events of a dump that the store does not have
// yet, so that a second import adds none. Only the newest ha.MaxEvents
// are worth writing: the store keeps no more.
func importEvents(ctx context.Context, st storedial.Store, evs []ha.Event) (int, error) {
	if len(evs) > ha.MaxEvents {
		evs = evs[len(evs)-ha.MaxEvents:]
	}
	have, err := st.Events(ctx, maxDumpEvents)
	if err != nil {
		return 0, fmt.Errorf("read the target's history: %w", err)
	}
	seen := make(map[string]bool, len(have))
	key := func(ev ha.Event) string {
		b, _ := json.Marshal(ev)
		return string(b)
	}
	for _, ev := range have {
		seen[key(ev)] = true
	}
	kept := 0
	for _, ev := range evs {
		if seen[key(ev)] {
			continue
		}
		if err := st.AppendEvent(ctx, ev); err != nil {
			return kept, fmt.Errorf("import the history (%d of %d events written): %w", kept, len(evs), err)
		}
		seen[key(ev)] = true
		kept++
	}
	return kept, nil
}
