package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// demoSelf is how the demo's hints name the haven binary. Under `go run`
// the binary is a temporary file that is gone when the demo ends, so the
// hints say to build one and use ./haven.
func demoSelf(out io.Writer, arg0 string) string {
	if strings.Contains(arg0, "go-build") || strings.HasPrefix(filepath.Base(arg0), "__debug") {
		fmt.Fprintln(out, "\nYou started the demo with `go run`: for the commands below, build haven first:\n  go build -o haven ./cmd/haven")
		return "./haven"
	}
	return arg0
}

// watchRoleEvents prints every role change after since, from the cluster's
// event history in the store, until ctx ends. The history is written
// through the store, so it holds only changes that happened: a node thawed
// after a freeze cannot show its stale view as a change, as polling each
// node's /status could.
func watchRoleEvents(ctx context.Context, out io.Writer, c *opsClient, since time.Time) {
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		var evs []ha.Event
		if err := c.getAny(func(addr string) (err error) {
			evs, err = c.api.Events(ctx, addr, 100)
			return err
		}); err != nil {
			continue
		}
		for _, line := range newRoleLines(evs, since, seen) {
			fmt.Fprintln(out, line)
		}
	}
}

// newRoleLines returns the demo's lines for the role events in evs after
// since that are not in seen, and marks them seen.
func newRoleLines(evs []ha.Event, since time.Time, seen map[string]bool) []string {
	var lines []string
	for _, e := range evs {
		if e.Kind != "role" || e.Time.Before(since) {
			continue
		}
		key := fmt.Sprintf("%d %s %s %s %d", e.Time.UnixNano(), e.Node, e.From, e.To, e.Epoch)
		if seen[key] {
			continue
		}
		seen[key] = true
		line := fmt.Sprintf("%s  %-3s %9s -> %-9s", e.Time.Local().Format("15:04:05.000"), e.Node, e.From, e.To)
		if e.Epoch != 0 {
			line += fmt.Sprintf(" epoch %d", e.Epoch)
		}
		if e.Reason != "" {
			line += "  (" + e.Reason + ")"
		}
		lines = append(lines, line)
	}
	return lines
}
