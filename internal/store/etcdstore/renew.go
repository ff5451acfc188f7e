package etcdstore

import (
	"context"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// keepAliveStream is one LeaseKeepAlive stream kept open for Renew: one
// request and its answer per renewal. clientv3's KeepAliveOnce opens and
// closes a stream for every renewal, which at the lan preset's ten
// renewals a second was a large part of an idle agent's work and of
// etcd's (docs/benchmarks.md). clientv3's KeepAlive is not used either: it
// renews on its own schedule and does not say when the renewal it reports
// was sent, and the agent's validity bound must come from that time.
//
// Renewals are serialized on the stream. The caller takes the send time
// before calling Renew, so time spent waiting here only makes the bound it
// derives more conservative. A renewal whose context ends first drops the
// stream (so that a late answer can never be taken for a later request's),
// and the next renewal opens a new one. The stream ends with the client.
type keepAliveStream struct {
	turn chan struct{} // holds a token while a renewal runs (capacity 1)

	// Owned by the holder of turn.
	stream pb.Lease_LeaseKeepAliveClient
	cancel context.CancelFunc
}

func newKeepAliveStream() *keepAliveStream {
	return &keepAliveStream{turn: make(chan struct{}, 1)}
}

type keepAliveAnswer struct {
	stream pb.Lease_LeaseKeepAliveClient
	resp   *pb.LeaseKeepAliveResponse
	err    error
}

// renewRetryPause spaces the retries of a renewal whose stream failed
// (etcd unavailable, a member restarting) within one Renew call, as
// clientv3's KeepAliveOnce retries.
const renewRetryPause = 10 * time.Millisecond

// renew renews lease id once and returns the TTL etcd granted: 0 when the
// lease is gone.
func (k *keepAliveStream) renew(ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID) (int64, error) {
	select {
	case k.turn <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-k.turn }()
	for {
		ttl, err := k.once(ctx, cli, id)
		if err == nil || ctx.Err() != nil || status.Code(err) != codes.Unavailable {
			return ttl, err
		}
		t := time.NewTimer(renewRetryPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// once sends one keep-alive on the stream, opening it if there is none;
// the caller holds turn.
func (k *keepAliveStream) once(ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID) (int64, error) {
	st := k.stream
	var sctx context.Context
	if st == nil {
		// The stream outlives this call: it ends on drop or with the client.
		sctx, k.cancel = context.WithCancel(cli.Ctx())
	}
	done := make(chan keepAliveAnswer, 1)
	go func() {
		st := st
		if st == nil {
			var err error
			// Waits for a connection (bounded: the stream is cancelled
			// when ctx ends), as KeepAliveOnce does.
			st, err = pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(sctx, grpc.WaitForReady(true))
			if err != nil {
				done <- keepAliveAnswer{err: err}
				return
			}
		}
		if err := st.Send(&pb.LeaseKeepAliveRequest{ID: int64(id)}); err != nil {
			done <- keepAliveAnswer{stream: st, err: err}
			return
		}
		resp, err := st.Recv()
		done <- keepAliveAnswer{st, resp, err}
	}()
	select {
	case a := <-done:
		if a.err != nil {
			k.drop()
			return 0, rpctypes.Error(a.err)
		}
		if a.resp.ID != int64(id) {
			k.drop()
			return 0, fmt.Errorf("keep-alive answer for lease %x, sent for %x", a.resp.ID, int64(id))
		}
		k.stream = a.stream
		return a.resp.TTL, nil
	case <-ctx.Done():
		k.drop() // ends the stream: the goroutine's Send or Recv returns
		return 0, ctx.Err()
	}
}

// drop ends the stream; the caller holds turn.
func (k *keepAliveStream) drop() {
	if k.cancel != nil {
		k.cancel()
	}
	k.stream, k.cancel = nil, nil
}
