package memstore

import (
	"context"

	"github.com/haven-ha/haven/internal/ha"
)

// Early is a client that says its store can end sessions early, as etcd
// can (ha.EarlyRevoker, which turns the lock-delay on), and shows Tenure as
// the tenure record while the leader key is vacant: for tests of the
// lock-delay's decisions.
type Early struct {
	*Client
	Tenure ha.Tenure
}

// EarlyRevocation implements ha.EarlyRevoker.
func (Early) EarlyRevocation() bool { return true }

// Watch is the client's watch with Tenure in every vacant snapshot.
func (s Early) Watch(ctx context.Context) <-chan ha.Snapshot {
	out := make(chan ha.Snapshot)
	go func() {
		defer close(out)
		for snap := range s.Client.Watch(ctx) {
			if snap.Leader.None() {
				snap.Tenure = s.Tenure
			}
			select {
			case out <- snap:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
