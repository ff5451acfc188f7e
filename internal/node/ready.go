package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/sdnotify"
)

// notifySystemd tells systemd (for agent a) (a Type=notify unit) READY=1 once the agent
// has joined the store and knows its role, then keeps the unit's STATUS
// line on the role, and says STOPPING=1 when ctx ends. Without
// $NOTIFY_SOCKET it does nothing.
func notifySystemd(ctx context.Context, a *agent.Agent, log *slog.Logger) {
	n, err := sdnotify.New(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		log.Warn("systemd notification off", "err", err)
		return
	}
	if !n.Enabled() {
		return
	}
	ready, last := false, ""
	for {
		select {
		case <-ctx.Done():
			_ = n.Send("STOPPING=1")
			return
		case <-a.Clock().After(100 * time.Millisecond):
		}
		st := a.State()
		if !ready && !(st.SessionOK && st.LeaderKnown && st.Role != ha.RoleStarting && st.Role != "") {
			continue
		}
		status := fmt.Sprintf("STATUS=%s", st.Role)
		if st.Holding() {
			status += fmt.Sprintf(" at epoch %d", st.Epoch)
		}
		if r := a.Status().Redundancy; r != nil {
			status += "; cluster " + string(r.State)
		}
		if ready && status == last {
			continue
		}
		msg := status
		if !ready {
			msg = "READY=1\n" + status
		}
		if err := n.Send(msg); err != nil {
			log.Warn("tell systemd", "err", err)
			continue
		}
		if !ready {
			log.Info("told systemd the agent is ready", "role", st.Role)
		}
		ready, last = true, status
	}
}

// notifyWitnessReady tells systemd READY=1 for a witness, whose etcd
// member has joined: it has no role to learn.
func notifyWitnessReady(log *slog.Logger) {
	n, err := sdnotify.New(os.Getenv("NOTIFY_SOCKET"))
	if err == nil {
		err = n.Send("READY=1\nSTATUS=witness: an etcd vote")
	}
	if err != nil {
		log.Warn("tell systemd", "err", err)
	}
}
