package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/sessions"
	"github.com/haven-ha/haven/internal/store/etcdstore"
)

// startSessions runs node's session store (`sessions:`) beside agent a,
// on the data of store. tlsConf nil serves plain TCP. It returns a function
// that stops it.
func startSessions(cfg *config.Config, node config.Node, a *agent.Agent, store ha.Store, tlsConf *tls.Config, log *slog.Logger) (stop func(), err error) {
	sc := cfg.Sessions
	data, ok := store.(ha.SessionData)
	layouts := []string{sessions.LayoutKeys}
	var logStats func() ha.SessionLogStats
	var relayout func() bool // nil: the layout never changes
	gate := func() (bool, string) {
		snap := a.Snapshot()
		return sessions.PackedReady(packedGateNodes(cfg, node.Name, snap), snap.Nodes)
	}
	if cfg.Mode != ha.ModeActiveActive {
		// Active-passive on etcd: the packed layout, once every node reads
		// it. Active-active keeps one key per session (its compare-and-swap
		// needs a revision per key).
		if lg, packed := packedSessions(store, func() bool { ok, _ := gate(); return ok }, historyKeep(cfg), log.With("part", "sessions")); packed {
			data, logStats = lg, lg.Stats
			layouts = append(layouts, sessions.LayoutPacked)
			// The active loaded one key per session and the gate has
			// opened since (the last old node was upgraded): it reloads,
			// and so migrates, without waiting for the next promotion.
			relayout = func() bool {
				if lg.Stats().Layout != sessions.LayoutKeys {
					return false
				}
				ok, _ := gate()
				return ok
			}
		}
	}
	if sq, isSQL := store.(sessions.SQLDB); !ok && isSQL {
		// PostgreSQL, MariaDB: the session tables live beside the store's.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		d, err := sessions.NewSQLData(ctx, sq, sessions.SQLOptions{})
		cancel()
		if err != nil {
			return nil, err
		}
		data, ok = d, true
	}
	if !ok {
		return nil, fmt.Errorf("sessions: the %s store cannot hold sessions; use store.backend: embedded, etcd, postgres or mysql, or remove the sessions section", cfg.Store.Backend)
	}
	listen := config.Expand(sc.Listen, cfg.Vars(node))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("sessions: listen on %s: %w (set sessions.listen to a free address; with several nodes on one host use ${VAR}s from each node's env)", listen, err)
	}
	srv := sessions.New(sessions.Options{
		Node:          node.Name,
		Password:      sc.Password,
		MaxValueBytes: sc.MaxValueBytes,
		MaxKeys:       sc.MaxKeys,
		TLS:           tlsConf,
		Clock:         a.Clock(),
		Log:           log.With("part", "sessions"),
		Backend:       data,
		Role:          a.SessionsRole,
		RoleChanged:   a.RoleChanged,
		ActiveActive:  cfg.Mode == ha.ModeActiveActive,
		Relayout:      relayout,
	})
	a.MustRegister(srv.Collectors()...)
	if logStats != nil {
		a.MustRegister(sessions.LogCollector(logStats, func() bool { ok, _ := gate(); return ok }, a.Clock().Now))
	}
	stats := func() ha.SessionStats {
		st := srv.Stats()
		ss := ha.SessionStats{Listen: listen, Keys: st.Keys, Bytes: st.Bytes, Writable: st.Writable, Layout: sessions.LayoutKeys, Layouts: layouts}
		if logStats != nil {
			snap := a.Snapshot()
			ss.Layout, ss.Log, ss.Waiting, ss.Warning = packedStats(logStats(), packedGateNodes(cfg, node.Name, snap), snap.Nodes)
		}
		return ss
	}
	a.SetSessionStats(stats)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	go func() {
		if err := srv.Serve(ctx, ln); err != nil {
			log.Error("sessions server stopped", "err", err)
		}
		done <- struct{}{}
	}()
	log.Info("sessions: Redis protocol", "listen", listen)
	return func() { cancel(); <-done; <-done }, nil
}

// packedSessions returns the session data of an etcd store in
// active-passive: the packed layout once the active has migrated to it,
// which it does when it loads and ready reports that every node reads it
// (etcdstore.PackedSessions).
func packedSessions(store ha.Store, ready func() bool, keep time.Duration, log *slog.Logger) (*etcdstore.SessionLog, bool) {
	ps, ok := store.(interface {
		PackedSessions(etcdstore.PackedOptions) *etcdstore.SessionLog
	})
	if !ok {
		return nil, false
	}
	return ps.PackedSessions(etcdstore.PackedOptions{Ready: ready, HistoryKeep: keep, Log: log}), true
}

// packedHistoryKeep: how much of etcd's history, at least, the active of
// an embedded store keeps when it compacts it after its own compactions
// (etcdstore.PackedOptions.HistoryKeep; docs/sessions.md, "What bounds
// etcd's size").
const packedHistoryKeep = 10 * time.Second

// historyKeep is PackedOptions.HistoryKeep for cfg: the embedded etcd is
// haven's own, so its active compacts etcd's history; an external etcd is
// left to its operator's auto-compaction settings (it may serve others).
func historyKeep(cfg *config.Config) time.Duration {
	if cfg.Store.Backend == config.BackendEmbedded {
		return packedHistoryKeep
	}
	return 0
}

// packedGateNodes are the nodes whose records must list the packed layout
// before the active migrates to it (sessions.PackedReady): every node of
// the config that can hold the active role, up or down, and any other node
// with a record in snap (one added to the cluster since this node started),
// witnesses aside (they never serve). self is left out: it runs this code.
func packedGateNodes(cfg *config.Config, self string, snap ha.Snapshot) []string {
	var names []string
	seen := map[string]bool{self: true}
	for _, n := range cfg.Nodes {
		if !n.Witness && !seen[n.Name] {
			seen[n.Name] = true
			names = append(names, n.Name)
		}
	}
	var extra []string
	for name, rec := range snap.Nodes {
		if !seen[name] && rec.Role != ha.RoleWitness {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	return append(names, extra...)
}

// packedStats is what a node's record says of the packed layout, from
// the backend's log stats and the records of nodes (packedGateNodes): the
// layout in use; once packed, the log's stats and a warning if a node runs
// a version that cannot read it; before, why the store is not packed yet.
func packedStats(ls ha.SessionLogStats, nodes []string, records map[string]ha.NodeStatus) (layout string, log *ha.SessionLogStats, waiting, warning string) {
	switch ls.Layout {
	case sessions.LayoutPacked:
		return ls.Layout, &ls, "", sessions.PackedUnreadable(nodes, records)
	case "":
		return "", nil, "", "" // not loaded yet
	}
	if ready, why := sessions.PackedReady(nodes, records); !ready {
		return sessions.LayoutKeys, nil, why, ""
	}
	return sessions.LayoutKeys, nil, "every node reads the packed layout; the active migrates the store to it now", ""
}
