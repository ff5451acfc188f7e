package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
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
	if es, isEtcd := store.(*etcdstore.Store); isEtcd && cfg.Mode != ha.ModeActiveActive {
		data = es.PackedSessions(etcdstore.PackedOptions{Log: log.With("part", "sessions")}) // no Ready yet: one key per session, as before
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
	})
	a.MustRegister(srv.Collectors()...)
	stats := func() ha.SessionStats {
		st := srv.Stats()
		return ha.SessionStats{Listen: listen, Keys: st.Keys, Bytes: st.Bytes, Writable: st.Writable}
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
