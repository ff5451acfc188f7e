package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/lease"
	"go.uber.org/zap"
)

// MemberConfig describes one embedded etcd member.
type MemberConfig struct {
	Name      string
	DataDir   string            // the member's own directory; kept across restarts
	Peer      string            // host:port to listen on for peers
	Client    string            // host:port to listen on for clients
	Cluster   map[string]string // every member's name -> peer host:port
	Token     string            // the cluster name, so two clusters never merge
	Heartbeat time.Duration
	Election  time.Duration
	LogFile   string   // etcd's own log; it is verbose and belongs in a file
	Others    []string // client host:port of the other members, to find a running cluster
	// ForceNewCluster restarts a member that has data as the only member
	// of a new cluster with the same data (etcd's --force-new-cluster):
	// disaster recovery when the majority is lost for good (haven recover).
	ForceNewCluster bool
	// TLS, when CAFile is set, makes both listeners mutual TLS: a peer or
	// client must present a certificate the CA signed. The member presents
	// CertFile to peers and clients alike.
	TLS TLSFiles
}

// TLSFiles name a member's TLS material (PEM files). etcd reads them again
// for every handshake, so replaced files take effect without a restart.
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
}

func (t TLSFiles) scheme() string {
	if t.CAFile != "" {
		return "https://"
	}
	return "http://"
}

// Member is a running embedded etcd member.
type Member struct {
	etcd   *embed.Etcd
	lessor lease.Lessor // the member's own; nil if it could not be found (revoke.go)
	judged func()       // tests: called by the revoker right after it judged a lease expired
}

// StartMember starts an embedded etcd member. It returns once the member
// listens; Ready reports when it has joined a quorum. A member whose data
// directory already holds a WAL restarts from it and rejoins its cluster.
func StartMember(mc MemberConfig) (*Member, error) {
	if err := os.MkdirAll(mc.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data directory: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = mc.Name
	cfg.Dir = mc.DataDir
	cfg.InitialClusterToken = "haven-" + mc.Token
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.TickMs = uint(mc.Heartbeat / time.Millisecond)
	cfg.ElectionMs = uint(mc.Election / time.Millisecond)
	cfg.PreVote = true
	cfg.StrictReconfigCheck = true
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "10000"
	cfg.SnapshotCount = 10000
	cfg.Metrics = "basic"
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	if mc.LogFile != "" {
		cfg.LogOutputs = []string{mc.LogFile}
	}
	scheme := mc.TLS.scheme()
	if mc.TLS.CAFile != "" {
		info := transport.TLSInfo{CertFile: mc.TLS.CertFile, KeyFile: mc.TLS.KeyFile, TrustedCAFile: mc.TLS.CAFile, ClientCertAuth: true}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = info, info
		cfg.PeerTLSInfo.ClientCertFile, cfg.PeerTLSInfo.ClientKeyFile = mc.TLS.CertFile, mc.TLS.KeyFile
		cfg.ClientTLSInfo.ClientCertFile, cfg.ClientTLSInfo.ClientKeyFile = mc.TLS.CertFile, mc.TLS.KeyFile
	}
	peer, err := url.Parse(scheme + mc.Peer)
	if err != nil {
		return nil, fmt.Errorf("peer address %q: %w", mc.Peer, err)
	}
	client, err := url.Parse(scheme + mc.Client)
	if err != nil {
		return nil, fmt.Errorf("client address %q: %w", mc.Client, err)
	}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.EnableGRPCGateway = false // haven's clients speak gRPC; the JSON gateway kept a connection of its own
	if mc.TLS.CAFile != "" {
		// With TLS and one port for both, etcd serves gRPC through Go's
		// HTTP/2 server (grpc.Server.ServeHTTP), which costs a goroutine
		// and several wake-ups per frame; an idle agent's renewals, watch
		// and status writes made it the largest single cost of an idle
		// embedded member (issue 20). A port of its own for etcd's HTTP
		// (/metrics, /health; loopback, a free port, mutual TLS as well)
		// leaves the client port to gRPC's own server.
		cfg.ListenClientHttpUrls = []url.URL{{Scheme: "https", Host: "127.0.0.1:0"}}
	}
	var parts []string
	for name, addr := range mc.Cluster {
		parts = append(parts, name+"="+scheme+addr)
	}
	cfg.InitialCluster = strings.Join(parts, ",")
	cfg.ForceNewCluster = mc.ForceNewCluster
	if !hasWAL(mc.DataDir) {
		// A member without data either bootstraps a new cluster with the
		// config's members, or joins a running one that added it
		// (`haven members add`).
		running, err := discover(mc.Others, mc.Name, scheme+mc.Peer, mc.TLS)
		if err != nil {
			return nil, err
		}
		if running != "" {
			cfg.ClusterState = embed.ClusterStateFlagExisting
			cfg.InitialCluster = running
		}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd member %s (data in %s): %w", mc.Name, mc.DataDir, err)
	}
	return &Member{etcd: e, lessor: lessorOf(e.Server)}, nil
}

// Ready waits until the member has joined a quorum, or ctx ends.
func (m *Member) Ready(ctx context.Context) error {
	select {
	case <-m.etcd.Server.ReadyNotify():
		return nil
	case err := <-m.etcd.Err():
		return fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Err reports a fatal error of the member. A nil Member (an agent on an
// external store runs none) never reports one.
func (m *Member) Err() <-chan error {
	if m == nil {
		return nil
	}
	return m.etcd.Err()
}

// IsLeader reports whether this member is the raft leader right now.
func (m *Member) IsLeader() bool {
	if m == nil {
		return false
	}
	return m.etcd.Server.Leader() == m.etcd.Server.MemberID()
}

// LeaderChanged returns a channel that is closed at the next change of
// raft leader; ask again after each. A nil Member's is never closed.
func (m *Member) LeaderChanged() <-chan struct{} {
	if m == nil {
		return nil
	}
	return m.etcd.Server.LeaderChangedNotify()
}

// Close stops the member. etcd's Close waits for its client servers, which
// only start once the member has joined a quorum; a member that never did
// would hold shutdown for a long time, so it is hard-stopped instead and
// Close gives up waiting after a few seconds (the process is exiting).
func (m *Member) Close() {
	if m == nil {
		return
	}
	select {
	case <-m.etcd.Server.ReadyNotify():
	default:
		m.etcd.Server.HardStop()
	}
	done := make(chan struct{})
	go func() { m.etcd.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

func hasWAL(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "member", "wal"))
	return err == nil
}

// discover asks the other members for the running cluster's membership. It
// returns "" when no cluster runs yet (nobody has a quorum: a fresh
// bootstrap), the initial-cluster string to join with when this member has
// been added, and an error when a cluster runs without this member.
func discover(others []string, name, peer string, files TLSFiles) (string, error) {
	if len(others) == 0 {
		return "", nil
	}
	eps := make([]string, len(others))
	for i, o := range others {
		eps[i] = files.scheme() + o
	}
	var tlsConf *tls.Config
	if files.CAFile != "" {
		var err error
		if tlsConf, err = tlsConfig(Options{CAFile: files.CAFile, CertFile: files.CertFile, KeyFile: files.KeyFile}); err != nil {
			return "", err
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: time.Second, Logger: zap.NewNop(), TLS: tlsConf})
	if err != nil {
		return "", nil
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Linearizable: only a cluster with a quorum answers, so members of a
	// cluster that is still bootstrapping never mistake it for a running one.
	resp, err := cli.MemberList(ctx)
	if err != nil {
		// No quorum answers. One case still has a cluster to join: a
		// one-member cluster (after haven recover or a snapshot restore)
		// that added this member has two voters and waits for it. A
		// member's own view says so: this peer listed without a name,
		// added but never started. A bootstrapping cluster names all its
		// initial members, so it is never mistaken for that.
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		resp, err = cli.MemberList(sctx, clientv3.WithSerializable())
		if err != nil || !addedNotStarted(resp.Members, peer) {
			return "", nil
		}
	}
	var parts []string
	found := false
	var names []string
	for _, m := range resp.Members {
		n := m.Name
		for _, u := range m.PeerURLs {
			if u == peer {
				found, n = true, name
			}
		}
		if n == "" || len(m.PeerURLs) == 0 {
			continue
		}
		names = append(names, n)
		parts = append(parts, n+"="+m.PeerURLs[0])
	}
	if !found {
		return "", fmt.Errorf("a cluster is running (members %s) and %s is not one of them; run `haven members add %s` on a running node first, then start this agent again", strings.Join(names, ", "), name, name)
	}
	return strings.Join(parts, ","), nil
}

// addedNotStarted reports whether members list peer as added but not
// started (no name yet).
func addedNotStarted(members []*etcdserverpb.Member, peer string) bool {
	for _, m := range members {
		if m.Name == "" && slices.Contains(m.PeerURLs, peer) {
			return true
		}
	}
	return false
}

// Stopped is closed when the member stops, e.g. after being removed. With
// no embedded member (an external store) it never is.
func (m *Member) Stopped() <-chan struct{} {
	if m == nil {
		return nil
	}
	return m.etcd.Server.StopNotify()
}

// DataDir is where a node keeps its etcd data under the haven data dir.
func DataDir(base, node string) string { return filepath.Join(base, node, "etcd") }

// MoveLeaderAway hands raft leadership to another member if this member has
// it. The agent calls it while it is active, so that losing the active node
// does not also cost an etcd election and the lease extension every new etcd
// leader grants (see the worst-case table in the README).
//
// It tries only the members named in prefer, in that order: the caller
// names the ones whose agents are alive. raft takes no proposals while it
// transfers leadership, and a transfer to a dead member blocks them until it
// times out (an election timeout); a transfer to a member that has just
// restarted waits for it to catch up. etcd itself picks the
// longest-connected member when it hands leadership over on shutdown.
func (m *Member) MoveLeaderAway(ctx context.Context, prefer []string) error {
	if m == nil {
		return nil
	}
	s := m.etcd.Server
	if s.Leader() != s.MemberID() {
		return nil
	}
	byName := map[string]*membership.Member{}
	for _, mem := range s.Cluster().Members() {
		byName[mem.Name] = mem
	}
	var errs []error
	tried := false
	for _, name := range prefer {
		mem := byName[name]
		if mem == nil || mem.ID == s.MemberID() || mem.IsLearner {
			continue
		}
		tried = true
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.MoveLeader(tctx, s.Lead(), uint64(mem.ID))
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("to %s: %w", mem.Name, err))
	}
	if !tried {
		return ErrNoOtherMember
	}
	return errors.Join(errs...)
}

// ErrNoOtherMember is MoveLeaderAway's answer when no other live voting
// member can take the leadership (a one-member cluster, or the others are
// down): nothing moved, and nothing is wrong.
var ErrNoOtherMember = errors.New("no other live voting member to hand etcd leadership to")

// HasData reports whether the member directory dir holds etcd data (a WAL).
func HasData(dir string) bool { return hasWAL(dir) }
