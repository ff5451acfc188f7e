// Package storedial turns the `store:` section of a configuration into a
// connected ha.Coordinator: the one place that knows every backend. The
// agent uses it for external stores (it runs its own member for the
// embedded one); tools such as `haven store export` use it for all.
package storedial

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/etcdstore"
	"github.com/haven-ha/haven/internal/store/mysql"
	"github.com/haven-ha/haven/internal/store/postgres"
)

// ErrConfig marks errors that retrying cannot fix (a missing secret file,
// a malformed connection string).
var ErrConfig = errors.New("store configuration")

// dialTimeout bounds each connection attempt.
const dialTimeout = 2 * time.Second

// Store is what the agent and the tools need: ha.Store, and moving the
// epoch counter and the node records between stores. Every backend has it.
type Store interface {
	ha.Store
	MaxEpoch(ctx context.Context) (ha.Epoch, error)
	RaiseEpoch(ctx context.Context, e ha.Epoch) error
	KeepRecords(ctx context.Context, recs []ha.NodeStatus) error
	Records(ctx context.Context) ([]ha.NodeStatus, error)
}

// Open connects to cfg's store as node (whose env may fill ${VAR} in the
// DSN; the zero Node for tools). For the embedded backend it dials the
// members at every node's client address, which works while they run.
func Open(ctx context.Context, cfg *config.Config, node config.Node) (Store, error) {
	st := cfg.Store
	switch st.Backend {
	case config.BackendEtcd, config.BackendEmbedded, "":
		o := etcdstore.Options{Endpoints: config.ExpandAll(st.Endpoints, cfg.Vars(node)), DialTimeout: dialTimeout,
			CAFile: st.TLS.CAFile, CertFile: st.TLS.CertFile, KeyFile: st.TLS.KeyFile, Username: st.Username}
		if !st.External() {
			o.Endpoints = nil
			for _, n := range cfg.Nodes {
				o.Endpoints = append(o.Endpoints, n.Client)
			}
		}
		pw, err := st.Password()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		o.Password = pw
		s, err := etcdstore.DialOptions(cfg.Cluster, o)
		if err != nil {
			return nil, err
		}
		return s, nil
	case config.BackendPostgres, config.BackendMySQL:
		dsn, err := st.ConnString(cfg.Vars(node))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if st.Backend == config.BackendPostgres {
			s, err := postgres.Open(ctx, postgres.Options{Cluster: cfg.Cluster, Node: node.Name, DSN: dsn,
				TablePrefix: st.TablePrefix, PollInterval: st.PollInterval, ConnectTimeout: dialTimeout})
			if err != nil {
				return nil, err
			}
			return s, nil
		}
		s, err := mysql.Open(ctx, mysql.Options{Cluster: cfg.Cluster, Node: node.Name, DSN: dsn,
			TablePrefix: st.TablePrefix, PollInterval: st.PollInterval, ConnectTimeout: dialTimeout})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: unknown store backend %q", ErrConfig, st.Backend)
}
