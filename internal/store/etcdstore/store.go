// Package etcdstore implements ha.Coordinator on etcd — an external cluster or
// the member haven embeds in every agent — and starts embedded members.
//
// Keys, under /haven/<cluster>/:
//
//	leader        the active node's name, attached to its session lease;
//	              its CreateRevision is the fencing epoch, so epochs only grow
//	nodes/<name>  each agent's ha.NodeStatus (JSON), attached to its lease
//	intents/maintenance/<name>  present while the node is in maintenance
//	intents/switchover          the pending ha.Switchover (JSON), leased
//	                            until its deadline
//	events/<time>-<node>        the history (ha.Event, JSON), pruned to
//	                            the newest ha.MaxEvents
//	props/<name>  operators' ha.NodeProps of the node (its alias), no lease
//
// Taking the leader key is one transaction that succeeds only if the key does
// not exist; giving it back is one that deletes it only at the holder's epoch.
package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/haven-ha/haven/internal/ha"
)

// Store is a Coordinator backed by etcd.
type Store struct {
	cli    *clientv3.Client
	prefix string
	scheme string // "https://" when the members use TLS, for peer URLs

	mu    sync.Mutex
	lease clientv3.LeaseID
	// won is the latest campaign this store won and the tenure record its
	// transaction replaced (PreviousTenure).
	won struct {
		epoch ha.Epoch
		prev  ha.Tenure
	}

	// stall, when set, bounds how long the watch may go without word
	// from its member (see SetWatchStall).
	stall time.Duration

	members *memberConns // Members' kept connection to each member (members.go)

	renewedHook func() // tests: runs between RenewConfirmed's keep-alive and its read
}

// SetWatchStall makes Watch ask its member for progress every stall/4 and
// start over — on whichever member the client picks next — when nothing
// has come back within stall. A client with several endpoints needs it: a
// member that is frozen (SIGSTOP, a stuck disk) keeps its connection open
// and its watch silent, so without it the watcher would see nothing until
// the member woke. Call it before Watch.
func (s *Store) SetWatchStall(stall time.Duration) { s.stall = stall }

// Dial connects to etcd at endpoints (host:port or URLs).
func Dial(cluster string, endpoints []string, dialTimeout time.Duration) (*Store, error) {
	return DialOptions(cluster, Options{Endpoints: endpoints, DialTimeout: dialTimeout})
}

// Options configure a connection to an etcd cluster.
type Options struct {
	Endpoints   []string // host:port or http(s):// URLs
	DialTimeout time.Duration
	// TLS: a CA to verify the servers with, and a client certificate.
	CAFile, CertFile, KeyFile string
	// Authentication (etcd users); empty Username means none.
	Username, Password string
}

// watchRetryMax bounds the pause between two attempts to set up a watch.
const watchRetryMax = 100 * time.Millisecond

// storeRedial bounds the wait between two attempts to reconnect to a member.
const storeRedial = 250 * time.Millisecond

// DialOptions connects to etcd as o says. Endpoints without a scheme use
// https when TLS files are given, http otherwise.
func DialOptions(cluster string, o Options) (*Store, error) {
	scheme := "http://"
	var tlsConf *tls.Config
	if o.CAFile != "" || o.CertFile != "" {
		var err error
		if tlsConf, err = tlsConfig(o); err != nil {
			return nil, err
		}
		scheme = "https://"
	}
	eps := make([]string, len(o.Endpoints))
	for i, e := range o.Endpoints {
		if !strings.Contains(e, "://") {
			e = scheme + e
		}
		eps[i] = e
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          o.DialTimeout,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		TLS:                  tlsConf,
		Username:             o.Username,
		Password:             o.Password,
		Logger:               zap.NewNop(),
		// gRPC's default reconnect back-off grows to two minutes: after a
		// store restart of a few seconds, a client kept waiting seconds
		// more with the store back (a standalone proxy learnt of the new
		// active 4.4 s late, #18.4). Retry at most every storeRedial.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: storeRedial},
			MinConnectTimeout: o.DialTimeout,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", o.Endpoints, err)
	}
	return &Store{cli: cli, prefix: "/haven/" + cluster + "/", scheme: scheme, members: &memberConns{cli: cli}}, nil
}

func tlsConfig(o Options) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA file %s holds no PEM certificate", o.CAFile)
		}
		c.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Client exposes the etcd client (for tools such as status and tests).
func (s *Store) Client() *clientv3.Client { return s.cli }

// keyPrefix is where cluster's keys live (Store.prefix).
func keyPrefix(cluster string) string { return "/haven/" + cluster + "/" }

// LeaderKey is cluster's leader key (see the package comment).
func LeaderKey(cluster string) string { return keyPrefix(cluster) + "leader" }

func (s *Store) leaderKey() string          { return s.prefix + "leader" }
func (s *Store) tenureKey() string          { return s.prefix + "tenure" }
func (s *Store) nodeKey(name string) string { return s.prefix + "nodes/" + name }

func (s *Store) currentLease() clientv3.LeaseID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}

// NewSession grants a fresh lease and makes it the session.
func (s *Store) NewSession(ctx context.Context, ttl time.Duration) (time.Duration, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	resp, err := s.cli.Grant(ctx, secs)
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	s.mu.Lock()
	old := s.lease
	s.lease = resp.ID
	s.mu.Unlock()
	if old != 0 {
		// Whatever the old session held must go with it; ignore failures,
		// the lease expires by itself anyway.
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, _ = s.cli.Revoke(rctx, old)
		cancel()
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// Renew sends one keep-alive for the session.
func (s *Store) Renew(ctx context.Context) (time.Duration, error) {
	id := s.currentLease()
	if id == 0 {
		return 0, ha.ErrSessionLost
	}
	resp, err := s.cli.KeepAliveOnce(ctx, id)
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, ha.ErrSessionLost
		}
		return 0, fmt.Errorf("renew lease: %w", err)
	}
	if resp.TTL <= 0 {
		return 0, ha.ErrSessionLost
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// Campaign takes the leader key if it is free. If the key is already this
// node's, bound to this session (a campaign that committed but whose answer
// was lost), it answers with that key's epoch, as etcd's own election does.
func (s *Store) Campaign(ctx context.Context, node string) (ha.Epoch, error) {
	id := s.currentLease()
	if id == 0 {
		return 0, ha.ErrSessionLost
	}
	k := s.leaderKey()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpGet(s.tenureKey()), // the record this win replaces (PreviousTenure)
			clientv3.OpPut(k, node, clientv3.WithLease(id)),
			clientv3.OpPut(s.tenureKey(), tenureValue(ha.Tenure{Node: node, Unsettled: true}))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, ha.ErrSessionLost
		}
		return 0, fmt.Errorf("campaign: %w", err)
	}
	if !resp.Succeeded {
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 &&
			string(kvs[0].Value) == node && kvs[0].Lease == int64(id) {
			return ha.Epoch(kvs[0].CreateRevision), nil
		}
		return 0, ha.ErrTaken
	}
	// The transaction is one revision: the key's CreateRevision, which
	// every later campaign exceeds. The tenure record (lockdelay) names the
	// node; its epoch is its own CreateRevision, the same revision.
	epoch := ha.Epoch(resp.Header.Revision)
	var prev ha.Tenure
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		prev = parseTenure(kvs[0].Value, kvs[0].ModRevision, false)
	}
	s.mu.Lock()
	s.won.epoch, s.won.prev = epoch, prev
	s.mu.Unlock()
	return epoch, nil
}

// PreviousTenure is the tenure record the campaign that won epoch replaced
// (ha.PreviousTenurer).
func (s *Store) PreviousTenure(epoch ha.Epoch) (ha.Tenure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch == 0 || s.won.epoch != epoch {
		return ha.Tenure{}, false
	}
	return s.won.prev, true
}

// Resign deletes the leader key if node still holds it at epoch.
func (s *Store) Resign(ctx context.Context, node string, epoch ha.Epoch) error {
	k := s.leaderKey()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", int64(epoch)),
			clientv3.Compare(clientv3.Value(k), "=", node)).
		Then(clientv3.OpDelete(k),
			clientv3.OpPut(s.tenureKey(), tenureValue(ha.Tenure{Epoch: epoch, Node: node, Ended: ha.TenureResigned}))).
		Commit()
	if err != nil {
		return fmt.Errorf("resign epoch %d: %w", epoch, err)
	}
	if !resp.Succeeded {
		return ha.ErrNotLeader
	}
	return nil
}

// Publish writes node status bound to the session.
func (s *Store) Publish(ctx context.Context, st ha.NodeStatus) error {
	id := s.currentLease()
	if id == 0 {
		return ha.ErrSessionLost
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, s.nodeKey(st.Name), string(b), clientv3.WithLease(id)); err != nil {
		return fmt.Errorf("publish status: %w", err)
	}
	return nil
}

// Watch streams snapshots of the leader and node records.
func (s *Store) Watch(ctx context.Context) <-chan ha.Snapshot {
	out := make(chan ha.Snapshot, 1)
	go func() {
		defer close(out)
		backoff := 50 * time.Millisecond
		var last lastSent
		for ctx.Err() == nil {
			connected, err := s.watchOnce(ctx, out, &last)
			if err != nil && ctx.Err() == nil && !last.behind(ctx, out) {
				return
			}
			if connected {
				// The back-off is for a store that does not answer; one
				// that answered and then failed (restarted, say) is
				// asked again at once, or the next active would be
				// learnt up to a second late (#18.4).
				backoff = 50 * time.Millisecond
			}
			if err != nil && ctx.Err() == nil {
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
				}
				// Short: a read that waits for the connection is what
				// should take the time, not a sleep after the store is
				// back (up to a second of it made a proxy switch late).
				backoff = min(2*backoff, watchRetryMax)
				continue
			}
			backoff = 50 * time.Millisecond
		}
	}()
	return out
}

// lastSent is the last snapshot a Watch sent, for the Behind one it sends
// when the watch starts over.
type lastSent struct {
	snap ha.Snapshot
	any  bool // a current snapshot has been sent
}

// sent notes a current snapshot sent (not to be changed after).
func (l *lastSent) sent(snap ha.Snapshot) { l.snap, l.any = snap, true }

// behind sends the last snapshot again, marked Behind, unless none was
// sent or it was Behind already (one per restart); false if ctx ended.
// The WithRequireLeader watch of a member cut off from its quorum is
// cancelled, and every restart begins with a linearizable read that such
// a member cannot serve: nothing came for as long as it was cut off, and
// an agent took its last snapshot as its view all that time (TestChaos's
// 409, chaos409's open point). Now it knows its view is behind.
func (l *lastSent) behind(ctx context.Context, out chan ha.Snapshot) bool {
	if !l.any || l.snap.Behind {
		return true
	}
	l.snap.Behind = true
	return ha.SendLatest(ctx, out, l.snap)
}

// watchOnce reads the state and watches it until the watch fails; it
// reports whether the store answered at all, and notes each snapshot it
// sends in last.
func (s *Store) watchOnce(ctx context.Context, out chan ha.Snapshot, last *lastSent) (connected bool, err error) {
	// WithRequireLeader: a member cut off from its quorum cancels the watch
	// instead of leaving us waiting silently on stale data.
	wctx, cancel := context.WithCancelCause(clientv3.WithRequireLeader(ctx))
	defer cancel(nil)
	rctx, done := wctx, context.CancelFunc(func() {})
	if s.stall > 0 {
		rctx, done = context.WithTimeout(wctx, s.stall)
	}
	// Everything but the history, which is read on demand, and the
	// service's data (kv.go), which is none of the agents' business: one
	// read-only transaction, so one revision and one round trip.
	resp, err := s.cli.Txn(rctx).Then(
		clientv3.OpGet(s.prefix, clientv3.WithRange(s.prefix+"data-ids/")),
		clientv3.OpGet(s.prefix+"data0", clientv3.WithRange(s.prefix+"events/")),
		clientv3.OpGet(s.prefix+"events0", clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.prefix))),
	).Commit()
	done()
	if err != nil {
		return false, err
	}
	var kvs []*mvccpb.KeyValue
	for _, r := range resp.Responses {
		kvs = append(kvs, r.GetResponseRange().Kvs...)
	}
	snap := ha.Snapshot{Rev: resp.Header.Revision, Nodes: map[string]ha.NodeStatus{}}
	for _, kv := range kvs {
		s.apply(&snap, string(kv.Key), kv.Value, s.revOf(kv), false)
	}
	first := clone(snap) // a copy: apply changes snap below
	if !ha.SendLatest(ctx, out, first) {
		return true, nil
	}
	last.sent(first)
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	heard := make(chan struct{}, 1)
	if s.stall > 0 {
		go s.watchdog(wctx, cancel, heard)
	}
	for wr := range wch {
		select {
		case heard <- struct{}{}:
		default:
		}
		if err := wr.Err(); err != nil {
			return true, err
		}
		changed := false
		for _, ev := range wr.Events {
			if strings.HasPrefix(string(ev.Kv.Key), s.prefix+"events/") || s.isData(string(ev.Kv.Key)) {
				continue // history is read on demand, not watched; data is the service's
			}
			changed = true
			s.apply(&snap, string(ev.Kv.Key), ev.Kv.Value, s.revOf(ev.Kv), ev.Type == clientv3.EventTypeDelete)
		}
		if !changed {
			continue
		}
		snap.Rev = wr.Header.Revision
		next := clone(snap)
		if !ha.SendLatest(ctx, out, next) {
			return true, nil
		}
		last.sent(next)
	}
	if err := context.Cause(wctx); err != nil && ctx.Err() == nil {
		return true, err
	}
	return true, errors.New("watch closed")
}

// errWatchStalled ends a watch whose member stopped answering.
var errWatchStalled = errors.New("watch stalled: the etcd member stopped answering progress requests")

// watchdog asks the watch's member for progress every stall/4 and cancels
// the watch when nothing (an event or a progress notification) has been
// heard for stall.
func (s *Store) watchdog(ctx context.Context, cancel context.CancelCauseFunc, heard <-chan struct{}) {
	tick := time.NewTicker(s.stall / 4)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-heard:
			last = time.Now()
		case <-tick.C:
			if time.Since(last) > s.stall {
				cancel(errWatchStalled)
				return
			}
			// Asynchronous: the answer comes back on the watch channel.
			rctx, done := context.WithTimeout(ctx, s.stall/4)
			_ = s.cli.RequestProgress(rctx)
			done()
		}
	}
}

func (s *Store) apply(snap *ha.Snapshot, key string, val []byte, createRev int64, deleted bool) {
	switch {
	case key == s.leaderKey():
		if deleted {
			snap.Leader = ha.Leader{}
		} else {
			snap.Leader = ha.Leader{Node: string(val), Epoch: ha.Epoch(createRev)}
		}
	case key == s.tenureKey():
		snap.Tenure = parseTenure(val, createRev, deleted)
	case key == s.prefix+"intents/switchover":
		snap.Intents.Switchover = nil
		if !deleted {
			var sw ha.Switchover
			if json.Unmarshal(val, &sw) == nil {
				snap.Intents.Switchover = &sw
			}
		}
	case strings.HasPrefix(key, s.prefix+"intents/maintenance/"):
		name := strings.TrimPrefix(key, s.prefix+"intents/maintenance/")
		if deleted {
			delete(snap.Intents.Maintenance, name)
		} else {
			if snap.Intents.Maintenance == nil {
				snap.Intents.Maintenance = map[string]bool{}
			}
			snap.Intents.Maintenance[name] = true
		}
	case s.applyProps(snap, key, val, deleted): // props.go
	case strings.HasPrefix(key, s.prefix+"nodes/"):
		name := strings.TrimPrefix(key, s.prefix+"nodes/")
		if deleted {
			delete(snap.Nodes, name)
			return
		}
		var st ha.NodeStatus
		if json.Unmarshal(val, &st) == nil {
			snap.Nodes[name] = st
		}
	}
}

func clone(s ha.Snapshot) ha.Snapshot {
	n := make(map[string]ha.NodeStatus, len(s.Nodes))
	for k, v := range s.Nodes {
		n[k] = v
	}
	s.Nodes = n
	if s.Intents.Maintenance != nil {
		m := make(map[string]bool, len(s.Intents.Maintenance))
		for k, v := range s.Intents.Maintenance {
			m[k] = v
		}
		s.Intents.Maintenance = m
	}
	if s.Intents.Switchover != nil {
		sw := *s.Intents.Switchover
		s.Intents.Switchover = &sw
	}
	return s
}

// Close revokes the session (best effort) and closes the client.
func (s *Store) Close() error {
	if id := s.currentLease(); id != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = s.cli.Revoke(ctx, id)
		cancel()
	}
	s.members.close()
	return s.cli.Close()
}

// MaxEpoch returns the store's revision: every epoch issued so far (a
// create revision) is at most that.
func (s *Store) MaxEpoch(ctx context.Context) (ha.Epoch, error) {
	resp, err := s.cli.Get(ctx, s.leaderKey())
	if err != nil {
		return 0, fmt.Errorf("read the etcd revision: %w", err)
	}
	return ha.Epoch(resp.Header.Revision), nil
}

// maxRaise bounds RaiseEpoch: etcd's revision only moves one write at a time.
const maxRaise = 1_000_000

// RaiseEpoch makes every future epoch greater than e. etcd's revision cannot
// be set, so it writes a marker key until the revision reaches e.
func (s *Store) RaiseEpoch(ctx context.Context, e ha.Epoch) error {
	cur, err := s.MaxEpoch(ctx)
	if err != nil {
		return err
	}
	if gap := int64(e - cur); gap > maxRaise {
		return fmt.Errorf("the etcd revision %d is %d below epoch %d; raising it takes one write each, more than the %d allowed", cur, gap, e, maxRaise)
	}
	for cur < e {
		resp, err := s.cli.Put(ctx, s.prefix+"epoch-floor", strconv.FormatInt(int64(e), 10))
		if err != nil {
			return fmt.Errorf("raise the etcd revision to %d: %w", e, err)
		}
		cur = ha.Epoch(resp.Header.Revision)
	}
	return nil
}

// KeepRecords stores node records as history (history/<name>, no lease).
func (s *Store) KeepRecords(ctx context.Context, recs []ha.NodeStatus) error {
	for _, st := range recs {
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if _, err := s.cli.Put(ctx, s.prefix+"history/"+st.Name, string(b)); err != nil {
			return fmt.Errorf("keep the record of %s: %w", st.Name, err)
		}
	}
	return nil
}

// Records returns the live node records and those kept as history (a live
// record wins over a kept one of the same node).
func (s *Store) Records(ctx context.Context) ([]ha.NodeStatus, error) {
	byName := map[string]ha.NodeStatus{}
	for _, sub := range []string{"history/", "nodes/"} {
		resp, err := s.cli.Get(ctx, s.prefix+sub, clientv3.WithPrefix())
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			var st ha.NodeStatus
			if json.Unmarshal(kv.Value, &st) == nil {
				byName[st.Name] = st
			}
		}
	}
	out := make([]ha.NodeStatus, 0, len(byName))
	for _, st := range byName {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

var _ ha.Coordinator = (*Store)(nil)
