package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/redundancy"
)

// Exit codes of `haven status`, for monitoring systems (Nagios-style
// checks, systemd timers, scripts).
const (
	exitDegraded = 1 // serving, but redundancy is lost (exitFailure: no agent answered, is 1 too)
	exitNoActive = 3 // no node is active
)

const statusExitHelp = `
Exit codes (for monitoring):
  0  one node is active and redundancy is intact (every other node an eligible
     standby, the store's quorum can lose a member)
  1  degraded: still serving, but a standby is down, unhealthy or in
     maintenance, or the store's quorum is at its minimum; or no agent answered,
     or none that answered knows who is active (it has not seen the store)
  2  bad input (flags, config)
  3  no node is active: clients are not served
With --watch the status is printed again every --interval until Ctrl-C, and
the exit code is that of the last look.

Epochs: the EPOCH column is the store's revision at the moment the node took
the active role (etcd's revision, or the SQL store's counter). It only grows,
with gaps: a new cluster starts at a small number above 1 because setting up
the store writes a few keys first. Comparing two epochs tells which active
came later; the gap between them means nothing.
`

// clusterHealth is the cluster's redundancy as the answering agent judged
// it, or, from an agent that does not report it, judged here from the nodes.
func clusterHealth(st api.Status) redundancy.Report {
	if st.Redundancy != nil {
		return *st.Redundancy
	}
	return redundancy.Assess(RedundancyInput(st, nil))
}

// RedundancyInput turns a status into the redundancy judgement's input.
func RedundancyInput(st api.Status, members []ha.Member) redundancy.Input {
	in := redundancy.Input{Active: st.Leader.Node, Members: members}
	for _, n := range st.Nodes {
		in.Nodes = append(in.Nodes, redundancy.Node{Name: n.Name, Role: n.Role, Eligible: n.Eligible, Witness: n.Witness, Why: n.Why})
	}
	return in
}

// statusCode maps the cluster's redundancy to status's exit code.
func statusCode(r redundancy.Report) int {
	switch r.State {
	case redundancy.OK:
		return exitOK
	case redundancy.NoActive:
		return exitNoActive
	default:
		return exitDegraded
	}
}

func printHealth(w io.Writer, r redundancy.Report) {
	fmt.Fprintf(w, "\nredundancy: %s (%d of %d standbys ready", r.State, r.Standbys, r.WantStandbys)
	if r.Members > 0 {
		fmt.Fprintf(w, "; store members %d of %d answer, quorum %d", r.HealthyMembers, r.Members, r.Quorum)
	}
	fmt.Fprintln(w, ")")
	for _, why := range r.Reasons {
		fmt.Fprintf(w, "  - %s\n", why)
	}
}

// activePID prints the pid of the active node's service or agent, for
// scripts (`kill -9 $(haven status --active-pid service)`), without jq.
func activePID(out, errw io.Writer, st api.Status, which string) int {
	if st.LeaderIsUnknown() {
		fmt.Fprintf(errw, "haven status: the active node is unknown (%s); no agent that answered knows it\n", st.LeaderUnknown)
		return exitFailure
	}
	for _, n := range st.Nodes {
		if n.Role != ha.RoleActive || n.Name != st.Leader.Node {
			continue
		}
		p := n.ServicePID
		if which == "agent" {
			p = n.AgentPID
		}
		if p == 0 {
			fmt.Fprintf(errw, "haven status: the active node %s reports no %s pid\n", n.Name, which)
			return exitFailure
		}
		fmt.Fprintln(out, p)
		return exitOK
	}
	fmt.Fprintln(errw, "haven status: no node is active")
	return exitNoActive
}

// showStatus prints one look at the cluster and returns status's exit code.
func showStatus(out, errw io.Writer, client *api.Client, addrs []string, asJSON bool, pidOf string) int {
	st, err := fetchStatus(context.Background(), client, addrs)
	if err != nil {
		fmt.Fprintf(errw, "haven status: %v\n", err)
		return exitFailure
	}
	if pidOf != "" {
		return activePID(out, errw, st, pidOf)
	}
	r := clusterHealth(st)
	if asJSON {
		if st.Redundancy == nil {
			st.Redundancy = &r
		}
		_ = writeJSON(out, st)
		return statusExit(st, r)
	}
	printStatus(out, st)
	if st.LeaderIsUnknown() {
		fmt.Fprintln(out, "\nredundancy: unknown (no agent that answered knows who is active; is the store reachable?)")
	} else {
		printHealth(out, r)
	}
	printVersions(out, st)
	return statusExit(st, r)
}

// statusExit is status's exit code. An answer from an agent that does not
// know the leader says nothing of whether clients are served: 1, as when
// no agent answers, not 3.
func statusExit(st api.Status, r redundancy.Report) int {
	if st.LeaderIsUnknown() {
		return exitFailure
	}
	return statusCode(r)
}

// watchStatus shows the status every interval until ctx ends.
func watchStatus(ctx context.Context, out, errw io.Writer, client *api.Client, addrs []string, asJSON bool, every time.Duration) int {
	code := exitOK
	for {
		if !asJSON {
			fmt.Fprintf(out, "\033[H\033[2J%s  (every %s, Ctrl-C to stop)\n", time.Now().Format("15:04:05"), every)
		}
		code = showStatus(out, errw, client, addrs, asJSON, "")
		select {
		case <-ctx.Done():
			return code
		case <-time.After(every):
		}
	}
}

// printVersions warns when the agents run different versions: fine during a
// rolling upgrade, not after it (docs/deploy.md, the version-skew rule).
func printVersions(w io.Writer, st api.Status) {
	seen := map[string][]string{}
	var order []string
	for _, n := range st.Nodes {
		if n.Version == "" || n.Role == ha.RoleDown || n.Role == ha.RoleStopped {
			continue
		}
		if _, ok := seen[n.Version]; !ok {
			order = append(order, n.Version)
		}
		seen[n.Version] = append(seen[n.Version], n.Name)
	}
	if len(order) < 2 {
		return
	}
	fmt.Fprint(w, "versions differ:")
	for _, v := range order {
		fmt.Fprintf(w, " %s on %s;", v, strings.Join(seen[v], ", "))
	}
	fmt.Fprintln(w, " finish the rolling upgrade (docs/deploy.md)")
}
