package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/operator"
)

// switchoverWindow is how long a switchover intent binds the cluster: only
// its target may campaign until then.
const switchoverWindow = operator.SwitchoverWindow

// record queues ev for the history; it never blocks the caller.
func (a *Agent) record(ev ha.Event) {
	if ev.Time.IsZero() {
		ev.Time = a.clk.Now()
	}
	if ev.Node == "" {
		ev.Node = a.node.Name
	}
	select {
	case a.eventC <- ev:
	default:
		a.log.Warn("event history queue full; event dropped", "kind", ev.Kind)
	}
}

// eventWriter appends queued events to the store's history.
func (a *Agent) eventWriter(ctx context.Context) {
	for {
		select {
		case ev := <-a.eventC:
			cctx, cancel := clock.WithTimeout(ctx, a.clk, opTimeout(a.cfg.Timing))
			for {
				err := a.store.AppendEvent(cctx, ev)
				if err == nil {
					break
				}
				a.log.Debug("record event", "err", err)
				if cctx.Err() != nil {
					break
				}
				// A quick refusal (etcd drops proposals while its
				// leadership moves, right after a failover): try again
				// shortly, within the same bound.
				sleep(cctx, a.clk, eventRetry)
			}
			cancel()
		case <-ctx.Done():
			return
		}
	}
}

// eventRetry is how soon an event the store refused is offered again.
const eventRetry = 100 * time.Millisecond

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Audit writes one operator call to the node's audit log (JSON lines in
// data_dir/<node>/audit.log) and to the cluster's history.
func (a *Agent) Audit(e api.AuditEntry) {
	if e.Action == "failsafe" && e.Status == 200 {
		return // agent-to-agent, several a second during a store outage
	}
	a.auditMu.Lock()
	defer a.auditMu.Unlock()
	f, err := os.OpenFile(filepath.Join(a.cfg.DataDir, a.node.Name, "audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.log.Error("audit log", "err", err)
	} else {
		b, _ := json.Marshal(e)
		_, _ = f.Write(append(b, '\n'))
		_ = f.Close()
	}
	a.log.Info("operator call", "who", e.Who, "action", e.Action, "status", e.Status, "result", e.Result)
	a.record(ha.Event{Time: e.Time, Kind: "audit", To: e.Action, Who: e.Who, Reason: fmt.Sprintf("%d %s", e.Status, e.Result)})
}
