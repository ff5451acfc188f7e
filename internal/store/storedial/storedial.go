// Package storedial turns the `store:` section of a configuration into a
// connected ha.Coordinator: the one place that knows every backend. The
// agent uses it for external stores (it runs its own member for the
// embedded one); tools such as `haven store export` use it for all.
package storedial

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/etcdstore"
	"github.com/haven-ha/haven/internal/store/mysql"
	"github.com/haven-ha/haven/internal/store/postgres"
)

// ErrConfig marks errors that retrying cannot fix (a missing secret file,
// a malformed connection string).
var ErrConfig = errors.New("store configuration")

// configError is an ErrConfig whose message stands on its own (it names
// the file, line and field, as config errors do).
type configError struct{ msg string }

func (e *configError) Error() string        { return e.msg }
func (e *configError) Is(target error) bool { return target == ErrConfig }

// CheckDSN checks, without connecting, that every node of cfg can build a
// usable connection string for a SQL store (after ${NAME} expansion, from
// dsn or dsn_file). A malformed one is an ErrConfig: retrying the
// connection cannot fix it. Other backends have nothing to check.
func CheckDSN(cfg *config.Config) error {
	if !cfg.Store.Shared() {
		return nil
	}
	for _, n := range cfg.Nodes {
		if n.Witness {
			continue
		}
		if _, err := connString(cfg, n); err != nil {
			return err
		}
	}
	return nil
}

// connString is node's connection string for cfg's SQL store, checked.
func connString(cfg *config.Config, node config.Node) (string, error) {
	st := cfg.Store
	where := fmt.Sprintf("%s:%d", cfg.Path, st.DSNLine)
	dsn, err := st.ConnString(cfg.Vars(node))
	if err != nil {
		return "", &configError{fmt.Sprintf("%s: %v", where, err)}
	}
	check, example := postgres.CheckDSN, "postgres://haven@db.example:5432/haven?sslmode=verify-full (or host=db.example port=5432 user=haven dbname=haven)"
	if st.Backend == config.BackendMySQL {
		check, example = mysql.CheckDSN, "haven:PASSWORD@tcp(db.example:3306)/haven"
	}
	field := "store.dsn"
	if st.DSNFile != "" {
		field = "store.dsn_file: the connection string in " + st.DSNFile
	}
	if i := strings.Index(dsn, "${"); i >= 0 {
		name, _, _ := strings.Cut(dsn[i+2:], "}")
		return "", &configError{fmt.Sprintf("%s: %s uses ${%s}, which node %s does not set; add %s to the node's env (nodes[].env)",
			where, field, name, node.Name, name)}
	}
	if err := check(dsn); err != nil {
		return "", &configError{fmt.Sprintf("%s: %s is not a valid %s connection string: %v; write it like %s",
			where, field, st.Backend, err, example)}
	}
	return dsn, nil
}

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
			if cfg.TLS.Enabled() {
				// The members take only certificates of the cluster CA:
				// the node's own, or a tool's the operator's.
				name := node.Name
				if name == "" {
					name = "operator"
				}
				f := cfg.TLS.For(name)
				o.CAFile, o.CertFile, o.KeyFile = f.CA, f.Cert, f.Key
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
		dsn, err := connString(cfg, node)
		if err != nil {
			return nil, err
		}
		if st.Backend == config.BackendPostgres {
			s, err := postgres.Open(ctx, postgres.Options{Cluster: cfg.Cluster, Node: node.Name, DSN: dsn,
				TablePrefix: st.TablePrefix, PollInterval: st.PollInterval, ConnectTimeout: dialTimeout})
			if err != nil {
				return nil, err
			}
			return s, nil
		}
		o := mysql.Options{Cluster: cfg.Cluster, Node: node.Name, DSN: dsn,
			TablePrefix: st.TablePrefix, PollInterval: st.PollInterval, ConnectTimeout: dialTimeout}
		if st.TLS.CAFile != "" {
			// Verified TLS to MySQL/MariaDB with store.tls: the server's
			// certificate must be the CA's and name the DSN's host.
			if o.TLS, err = certs.ClientTLS(certs.Files{CA: st.TLS.CAFile, Cert: st.TLS.CertFile, Key: st.TLS.KeyFile}); err != nil {
				return nil, fmt.Errorf("%w: store.tls: %w", ErrConfig, err)
			}
		}
		s, err := mysql.Open(ctx, o)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: unknown store backend %q", ErrConfig, st.Backend)
}
