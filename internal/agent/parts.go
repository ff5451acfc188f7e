package agent

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// What the composition root (package node) uses to wire an agent to its
// listeners, its etcd member, the dashboard, the proxy and the session store.

// Clock is the agent's clock.
func (a *Agent) Clock() clock.Clock { return a.clk }

// Logger is the agent's log.
func (a *Agent) Logger() *slog.Logger { return a.log }

// PeerClient calls the other agents' APIs (the token, TLS as this node).
func (a *Agent) PeerClient() *api.Client { return a.peerClient() }

// SetTLS hands the agent this node's TLS material (nil without TLS), before Run.
func (a *Agent) SetTLS(src *certs.Source) { a.tls = src }

// Monitor judges the cluster's redundancy and the store's members until ctx ends.
func (a *Agent) Monitor(ctx context.Context) { a.monitor(ctx) }

// TLSReloader is what a SIGHUP runs to reload this node's TLS files (nil
// without TLS); it records a warning now if a certificate expires soon.
func (a *Agent) TLSReloader(log *slog.Logger) func() { return a.tlsReloader(log) }

// LoadTLS checks and loads node's TLS material; nil without TLS.
func LoadTLS(cfg *config.Config, node config.Node) (*certs.Source, error) { return loadTLS(cfg, node) }

// ServeLBCheck serves /lb-check and /healthz in plain HTTP on
// api.lb_check_listen, when configured.
func ServeLBCheck(cfg *config.Config, node config.Node, a *Agent, log *slog.Logger) (stop func(), err error) {
	return serveLBCheck(cfg, node, a, log)
}

// SessionsRole is the session store's view of this node: it writes only
// while it serves as active, at its epoch (the store checks the epoch again
// in every commit).
func (a *Agent) SessionsRole() (ha.Epoch, bool) {
	st := a.State()
	return st.Epoch, st.Serving(a.mcfg, a.clk.Now())
}

// RoleChanged returns a channel that is closed at the next change of this
// node's role, epoch, health or session: what SessionsRole and the
// folders' role depend on, apart from the clock (the fence deadline, which
// the agent's loop turns into a role change). Ask again after each.
func (a *Agent) RoleChanged() <-chan struct{} {
	if c := a.roleChanged.Load(); c != nil {
		return *c
	}
	return nil
}

// noteRoleChange closes the channel RoleChanged handed out.
func (a *Agent) noteRoleChange() {
	c := make(chan struct{})
	if old := a.roleChanged.Swap(&c); old != nil {
		close(*old)
	}
}

// MustRegister adds collectors to the agent's /metrics.
func (a *Agent) MustRegister(cs ...prometheus.Collector) { a.metrics.reg.MustRegister(cs...) }

// SetSessionStats hands the agent what reports the session store's size,
// for its status record.
func (a *Agent) SetSessionStats(stats func() ha.SessionStats) { a.sessStats.Store(&stats) }
