package etcdstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/haven-ha/haven/internal/ha"
)

// memberConns keeps one gRPC connection per member endpoint for Members'
// health probes. clientv3's Status(endpoint) dials (TCP and TLS) and closes
// a new connection on every call: with the redundancy monitor asking every
// member every 2 s, those handshakes were the largest part of an idle
// agent's CPU that was not a timer (docs/benchmarks.md). A kept connection
// is probed the same way: a member that is down, frozen or cut off fails
// the call within its deadline, and gRPC redials on its own (at most every
// storeRedial).
//
// Closing never waits long for an unreachable member: gRPC's Close of a
// connection whose peer is cut off waits up to seconds to say goodbye, so
// connections are closed side by side and close gives up waiting after
// memberCloseWait (they finish closing in the background).
type memberConns struct {
	cli *clientv3.Client // dials with the store's credentials and options

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	done  bool
}

// memberCloseWait bounds how long closing the kept member connections
// holds up Store.Close.
const memberCloseWait = 500 * time.Millisecond

// status asks the member at endpoint for its status over a kept connection.
func (m *memberConns) status(ctx context.Context, endpoint string) (*pb.StatusResponse, error) {
	m.mu.Lock()
	if m.done {
		m.mu.Unlock()
		return nil, fmt.Errorf("ask etcd member %s: store closed", endpoint)
	}
	conn := m.conns[endpoint]
	if conn == nil {
		// Dial does not block: gRPC connects on the first call.
		var err error
		if conn, err = m.cli.Dial(endpoint); err != nil {
			m.mu.Unlock()
			return nil, fmt.Errorf("connect to etcd member %s: %w", endpoint, err)
		}
		if m.conns == nil {
			m.conns = map[string]*grpc.ClientConn{}
		}
		m.conns[endpoint] = conn
	}
	m.mu.Unlock()
	// Wait for the connection (it may be redialling) until ctx ends, as
	// clientv3's Status does.
	return pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{}, grpc.WaitForReady(true))
}

// forget closes the kept connections to endpoints not in keep (members
// that were removed or moved).
func (m *memberConns) forget(keep map[string]bool) {
	m.mu.Lock()
	var gone []*grpc.ClientConn
	for ep, c := range m.conns {
		if !keep[ep] {
			gone = append(gone, c)
			delete(m.conns, ep)
		}
	}
	m.mu.Unlock()
	closeConns(gone, 0)
}

// close closes every kept connection; later probes fail.
func (m *memberConns) close() {
	m.mu.Lock()
	var all []*grpc.ClientConn
	for _, c := range m.conns {
		all = append(all, c)
	}
	m.conns, m.done = nil, true
	m.mu.Unlock()
	closeConns(all, memberCloseWait)
}

// closeConns closes conns side by side and waits for them at most wait.
func closeConns(conns []*grpc.ClientConn, wait time.Duration) {
	if len(conns) == 0 {
		return
	}
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { _ = c.Close() })
		}
		wg.Wait()
		close(done)
	}()
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// Members lists the etcd cluster's members, each probed for health.
func (s *Store) Members(ctx context.Context) ([]ha.Member, error) {
	resp, err := s.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", err)
	}
	var out []ha.Member
	for _, m := range resp.Members {
		mem := ha.Member{Name: m.Name, ID: m.ID, Started: m.Name != ""}
		if len(m.PeerURLs) > 0 {
			mem.Peer = strings.TrimPrefix(strings.TrimPrefix(m.PeerURLs[0], "http://"), "https://")
		}
		if len(m.ClientURLs) > 0 {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := s.members.status(sctx, m.ClientURLs[0])
			cancel()
			if err == nil {
				mem.Healthy = true
				mem.Leader = st.Leader == m.ID
				mem.DBBytes, mem.DBInUseBytes, mem.DBQuotaBytes = st.DbSize, st.DbSizeInUse, st.DbSizeQuota
				mem.Alarms = st.Errors
			}
		}
		out = append(out, mem)
	}
	keep := map[string]bool{}
	for _, m := range resp.Members {
		if len(m.ClientURLs) > 0 {
			keep[m.ClientURLs[0]] = true
		}
	}
	s.members.forget(keep)
	return out, nil
}

// AddMember adds a voting member that will join from peer.
func (s *Store) AddMember(ctx context.Context, name, peer string) error {
	if _, err := s.cli.MemberAdd(ctx, []string{s.scheme + peer}); err != nil {
		return fmt.Errorf("add etcd member %s: %w", name, err)
	}
	return nil
}

// RemoveMember removes a voting member.
func (s *Store) RemoveMember(ctx context.Context, id uint64) error {
	if _, err := s.cli.MemberRemove(ctx, id); err != nil {
		return fmt.Errorf("remove etcd member %x: %w", id, err)
	}
	return nil
}

var _ ha.Membership = (*Store)(nil)
