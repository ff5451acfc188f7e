package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/reload"
	"github.com/haven-ha/haven/internal/store/etcdstore"
	"github.com/haven-ha/haven/internal/store/storedial"
	"github.com/haven-ha/haven/internal/vip"
)

// RunNode runs the named node of cfg until ctx ends: its embedded etcd
// member, its agent and its HTTP API. The agent's and the proxy's TLS
// reloads join hup, the process's SIGHUP handler; nil: RunNode installs
// one of its own (tests).
func RunNode(ctx context.Context, cfg *config.Config, name string, log *slog.Logger, hup *reload.Set) error {
	node, ok := cfg.NodeByName(name)
	if !ok {
		return fmt.Errorf("node %q is not in %s; use one of the names listed under nodes", name, cfg.Path)
	}
	if node.Witness {
		return fmt.Errorf("node %q is a witness; run it with `haven witness --node %s`", name, name)
	}
	log = log.With("node", name)
	if cfg.VIP.Enabled() {
		// Before anything starts: a node that could not hold the VIP must
		// not become active.
		v, err := vip.New(cfg.VIPOptions(node))
		if err == nil {
			err = v.Preflight()
		}
		if err != nil {
			return fmt.Errorf("node %s cannot hold the virtual IP: %w", name, err)
		}
	}
	tlsSrc, err := agent.LoadTLS(cfg, node)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", node.API)
	if err != nil {
		return fmt.Errorf("listen on api address %s of node %s: %w (is another agent running with this node name?)", node.API, name, err)
	}
	defer ln.Close()
	if tlsSrc != nil {
		// HTTPS; a client certificate is optional (browsers have none, the
		// CLI may use the token), but one that is presented must verify.
		ln = tls.NewListener(ln, tlsSrc.ServerConfig(false))
	} else {
		log.Warn("running without TLS (insecure: true): " + cfg.InsecureWarning())
	}

	member, store, err := startCoordination(ctx, cfg, node, log)
	if err != nil {
		return err
	}
	defer member.Close()

	a, err := agent.New(cfg, node, store, clock.Real{}, log)
	if err != nil {
		_ = store.Close()
		return err
	}
	a.SetTLS(tlsSrc)
	if member != nil {
		a.SetEtcdLeader(member.IsLeader) // a standby leading etcd lets another win the campaign
	}
	fsvc, err := agent.NewFolders(cfg, node, a, log)
	if err != nil {
		_ = store.Close()
		return err
	}
	handler, closeDash := httpHandler(a, apiOptions(cfg, a)) // the API and the dashboard
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	srv.RegisterOnShutdown(closeDash) // live dashboard streams never go idle
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api server", "err", err)
		}
	}()
	stopLB, err := agent.ServeLBCheck(cfg, node, a, log)
	if err != nil {
		_ = store.Close()
		return err
	}
	defer stopLB()
	log.Info("agent started", "api", cfg.APIURL(node.API), "pid", os.Getpid())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if hup == nil {
		hup = &reload.Set{}
		hup.OnSignal(runCtx)
	}
	hup.Add(a.TLSReloader(log))
	go func() {
		select {
		case err := <-member.Err():
			log.Error("embedded etcd failed; stopping the agent", "err", err)
			cancel()
		case <-member.Stopped():
			log.Error("this node's etcd member stopped (removed from the cluster with `haven members remove`?); stopping the agent")
			cancel()
		case <-runCtx.Done():
		}
	}()
	go agent.KeepLeaderAway(runCtx, a, raftMember{member}, log)
	go member.RevokeAtExpiry(runCtx, etcdstore.LeaderKey(cfg.Cluster), log, a.RevokedAtExpiry) // when this member leads etcd
	if cfg.VIP.FollowsProxy() {
		// The VIP's election too: its expiry recorded, its next holder
		// adds the address without the lock-delay's wait.
		go member.RevokeAtExpiry(runCtx, etcdstore.LeaderKey(cfg.VIPElection()), log, nil)
	}
	go a.Monitor(runCtx)
	go notifySystemd(runCtx, a, log)
	stopProxy := func() {}
	if cfg.Proxy.Listen != "" && !cfg.Proxy.Standalone {
		// This node's proxy; it learns how fresh the store is from the
		// agent's lease renewals, and stops after the agent.
		fresh := func() time.Time { return a.State().ValidUntil.Add(-cfg.Timing.LeaseTTL) }
		if stopProxy, err = startProxy(cfg, node, store, fresh, log, hup); err != nil {
			_ = store.Close()
			return err
		}
	}
	stopFollow := func() {}
	if cfg.VIP.FollowsProxy() {
		// The VIP follows a healthy proxy: its own election, started after
		// this node's proxy (if it runs one) and stopped before it.
		if stopFollow, err = a.StartFollowProxy(runCtx, func(ctx context.Context) (ha.Coordinator, error) { return dialVIPElection(ctx, cfg, node) }); err != nil {
			stopProxy()
			_ = store.Close()
			return err
		}
	}
	stopSessions := func() {}
	if cfg.Sessions.Listen != "" {
		// TLS for this listener comes with the cluster's tls: section, as
		// for the API: a client certificate is optional (Redis clients
		// rarely have one; the password authorizes), one presented must verify.
		var sessTLS *tls.Config
		if tlsSrc != nil {
			sessTLS = tlsSrc.ServerConfig(false)
		}
		if stopSessions, err = startSessions(cfg, node, a, store, sessTLS, log); err != nil {
			stopFollow()
			stopProxy()
			_ = store.Close()
			return err
		}
	}
	foldersDone := make(chan struct{})
	if fsvc != nil {
		go func() { defer close(foldersDone); _ = fsvc.Run(runCtx) }()
	} else {
		close(foldersDone)
	}
	err = a.Run(runCtx)
	cancel()
	<-foldersDone
	if fsvc != nil {
		fsvc.Close()
	}
	stopSessions()
	stopFollow()
	stopProxy()
	_ = store.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = srv.Shutdown(sctx)
	scancel()
	log.Info("agent stopped")
	return err
}

// RunWitness runs the named witness: an etcd member and nothing else, whose
// vote lets two service nodes keep a quorum when one of them fails.
func RunWitness(ctx context.Context, cfg *config.Config, name string, log *slog.Logger) error {
	node, ok := cfg.NodeByName(name)
	if !ok {
		return fmt.Errorf("node %q is not in %s; use one of the names listed under nodes", name, cfg.Path)
	}
	if !node.Witness {
		return fmt.Errorf("node %q is not a witness (add `witness: true` to it, or run it with `haven agent`)", name)
	}
	log = log.With("node", name, "witness", true)
	if _, err := agent.LoadTLS(cfg, node); err != nil {
		return err
	}
	clk := clock.Real{}
	member, store, err := startCoordination(ctx, cfg, node, log)
	if err != nil {
		return err
	}
	defer member.Close()
	defer store.Close()
	// The witness normally leads etcd (keepLeaderAway offers it first):
	// its lessor is the one that sees the active's lease expire.
	go member.RevokeAtExpiry(ctx, etcdstore.LeaderKey(cfg.Cluster), log, nil)
	if cfg.VIP.FollowsProxy() {
		go member.RevokeAtExpiry(ctx, etcdstore.LeaderKey(cfg.VIPElection()), log, nil)
	}
	log.Info("witness started")
	notifyWitnessReady(log)
	// Publish a record so that status shows the witness as up, until the
	// witness stops (joined before the store closes).
	pctx, stopPublish := context.WithCancel(ctx)
	published := make(chan struct{})
	defer func() { stopPublish(); <-published }()
	go func() {
		defer close(published)
		ctx := pctx
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			ttl, err := store.NewSession(cctx, cfg.Timing.LeaseTTL)
			if err == nil {
				err = store.Publish(cctx, ha.NodeStatus{Name: name, Role: ha.RoleWitness, Healthy: true, Reason: "etcd member", AgentPID: os.Getpid(), StartedAt: clk.Now(), Heartbeat: clk.Now(), Version: agent.Version})
			}
			cancel()
			for err == nil && ctx.Err() == nil {
				select {
				case <-clk.After(ttl / 3):
				case <-ctx.Done():
				}
				cctx, cancel := context.WithTimeout(ctx, ttl/3)
				_, err = store.Renew(cctx)
				cancel()
			}
			select {
			case <-clk.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}()
	select {
	case <-ctx.Done():
	case err := <-member.Err():
		return fmt.Errorf("embedded etcd: %w", err)
	}
	log.Info("witness stopped")
	return nil
}

// startCoordination connects node to its coordination store. With the
// embedded backend it starts the node's etcd member and dials it; with an
// external one (etcd, postgres, mysql) it runs no member (nil) and dials
// the store, retrying until it answers or ctx ends, so that agents may start
// before their database.
func startCoordination(ctx context.Context, cfg *config.Config, node config.Node, log *slog.Logger) (*etcdstore.Member, ha.Store, error) {
	if cfg.Store.External() {
		for backoff := 200 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
			store, err := storedial.Open(ctx, cfg, node)
			if err == nil {
				log.Info("connected to the coordination store", "backend", cfg.Store.Backend)
				return nil, store, nil
			}
			if errors.Is(err, storedial.ErrConfig) {
				return nil, nil, err
			}
			log.Warn("cannot reach the coordination store; retrying", "backend", cfg.Store.Backend, "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("connect to the %s store: %w", cfg.Store.Backend, err)
			case <-clock.Real{}.After(backoff):
			}
		}
	}
	peers := map[string]string{}
	var others []string
	for _, n := range cfg.Nodes {
		peers[n.Name] = n.Peer
		if n.Name != node.Name {
			others = append(others, n.Client)
		}
	}
	var files config.TLSFiles // the member's and its client's: this node's
	if cfg.TLS.Enabled() {
		files = cfg.TLS.For(node.Name)
	}
	dir := filepath.Join(cfg.DataDir, node.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create data directory %s: %w (set data_dir to a writable place)", dir, err)
	}
	member, err := etcdstore.StartMember(etcdstore.MemberConfig{
		Name:      node.Name,
		DataDir:   etcdstore.DataDir(cfg.DataDir, node.Name),
		Peer:      node.Peer,
		Client:    node.Client,
		Cluster:   peers,
		Token:     cfg.Cluster,
		Heartbeat: cfg.Timing.EtcdHeartbeat,
		Election:  cfg.Timing.EtcdElection,
		LogFile:   filepath.Join(dir, "etcd.log"),
		Others:    others,
		TLS:       etcdstore.TLSFiles{CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key},
	})
	if err != nil {
		return nil, nil, err
	}
	// Only the local member: it lives in this process, so it is frozen or
	// dead exactly when the agent is, and it forwards to the raft leader.
	// Listing the other members would make the client's round robin send
	// requests to a frozen peer and stall this agent with it; and an agent
	// whose member is cut off from the quorum must not act anyway.
	store, err := etcdstore.DialOptions(cfg.Cluster, etcdstore.Options{Endpoints: []string{node.Client}, DialTimeout: 2 * time.Second, CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key})
	if err != nil {
		member.Close()
		return nil, nil, err
	}
	return member, store, nil
}

// dialVIPElection opens the VIP election's own connection to the store,
// under its own name (config.VIPElection), as startCoordination opens the
// agent's: to the local member only with the embedded store.
func dialVIPElection(ctx context.Context, cfg *config.Config, node config.Node) (ha.Coordinator, error) {
	if cfg.Store.External() {
		c := *cfg
		c.Cluster = cfg.VIPElection()
		return storedial.Open(ctx, &c, node)
	}
	var files config.TLSFiles
	if cfg.TLS.Enabled() {
		files = cfg.TLS.For(node.Name)
	}
	return etcdstore.DialOptions(cfg.VIPElection(), etcdstore.Options{Endpoints: []string{node.Client}, DialTimeout: 2 * time.Second, CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key})
}

// raftMember is this node's etcd member as agent.KeepLeaderAway takes it.
type raftMember struct{ *etcdstore.Member }

func (m raftMember) MoveLeaderAway(ctx context.Context, prefer []string) error {
	err := m.Member.MoveLeaderAway(ctx, prefer)
	if errors.Is(err, etcdstore.ErrNoOtherMember) {
		return agent.ErrNoOtherMember
	}
	return err
}
