package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/proxy"
	"github.com/haven-ha/haven/internal/reload"
)

// ProxyNodes lists the nodes of cfg that can take traffic, or says which one
// lacks a backend.
func ProxyNodes(cfg *config.Config) ([]proxy.Node, error) {
	var nodes []proxy.Node
	for _, n := range cfg.Nodes {
		if n.Witness {
			continue
		}
		if n.Backend == "" {
			return nil, fmt.Errorf("node %s has no backend; add backend: host:port (where its service listens) to it in %s", n.Name, cfg.Path)
		}
		nodes = append(nodes, proxy.Node{Name: n.Name, Backend: n.Backend, API: n.API})
	}
	return nodes, nil
}

// startProxy starts the proxy of an agent (the config's proxy: section,
// with ${VAR}s expanded from node's variables). fresh tells when the agent
// last heard from the store; hup gets the proxy's certificate reload. The
// returned stop ends the proxy and waits.
func startProxy(cfg *config.Config, node config.Node, src proxy.Source, fresh func() time.Time, log *slog.Logger, hup *reload.Set) (stop func(), err error) {
	pc := cfg.Proxy
	vars := cfg.Vars(node)
	pc.Listen = config.Expand(pc.Listen, vars)
	pc.MetricsListen = config.Expand(pc.MetricsListen, vars)
	nodes, err := ProxyNodes(cfg)
	if err != nil {
		return nil, err
	}
	apiTLS, err := ProxyAPITLS(cfg, node.Name)
	if err != nil {
		return nil, err
	}
	p, err := proxy.New(proxy.Options{Config: pc, Mode: cfg.Mode, LeaseTTL: cfg.Timing.LeaseTTL, Nodes: nodes, Source: src, Fresh: fresh, Log: log, APITLS: apiTLS})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", pc.Listen)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen on %s: %w (another agent on this host may have it: give each node its own address with a ${VAR} from the node's env in proxy.listen, or set proxy.standalone: true and run one `haven proxy`)", pc.Listen, err)
	}
	hup.Add(p.Reload)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Serve(ctx, ln); err != nil {
			log.Error("proxy stopped", "part", "proxy", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// ProxyAPITLS is the TLS configuration with which the proxy of node (""
// for a proxy of its own: the operator's certificate) probes the agents'
// /lb-check; nil when the cluster runs without TLS.
func ProxyAPITLS(cfg *config.Config, node string) (*tls.Config, error) {
	if !cfg.TLS.Enabled() {
		return nil, nil
	}
	if node == "" {
		node = certs.Operator
	}
	t, err := certs.ClientTLS(certs.Files(cfg.TLS.For(node)))
	if err != nil {
		return nil, fmt.Errorf("proxy: TLS to the agents: %w", err)
	}
	return t, nil
}
