package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/sessions"
)

func runStatus(args []string, out, errw io.Writer) int {
	fs := newFlags("status", errw)
	cfgPath := configFlag(fs)
	target := apiFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	watch := fs.Bool("watch", false, "show the status again every --interval until Ctrl-C")
	every := fs.Duration("interval", 2*time.Second, "how often --watch looks")
	pidOf := fs.String("active-pid", "", "print only the active node's service or agent pid (service|agent), for scripts")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	var addrs []string
	var client *api.Client
	if target.set() {
		var fromConfig func() (*api.Client, error)
		if *cfgPath != "" {
			fromConfig = func() (*api.Client, error) {
				cfg, err := config.Load(*cfgPath)
				if err != nil {
					return nil, err
				}
				return apiClient(cfg, "", 2*time.Second)
			}
		}
		u, c, err := target.client(2*time.Second, fromConfig)
		if err != nil {
			fmt.Fprintf(errw, "haven status: %v\n", err)
			return exitUsage
		}
		addrs, client = []string{u}, c
	} else {
		cfg, code := loadConfig(*cfgPath, errw)
		if cfg == nil {
			return code
		}
		addrs = agentAddrs(cfg)
		var err error
		if client, err = apiClient(cfg, "", 2*time.Second); err != nil {
			fmt.Fprintf(errw, "haven status: %v\n", err)
			return exitFailure
		}
	}
	if *pidOf != "" && *pidOf != "service" && *pidOf != "agent" {
		fmt.Fprintln(errw, "haven status: --active-pid is service or agent")
		return exitUsage
	}
	if *watch {
		if *every < 100*time.Millisecond {
			fmt.Fprintln(errw, "haven status: --interval must be at least 100ms")
			return exitUsage
		}
		ctx, stop := signalContext()
		defer stop()
		return watchStatus(ctx, out, errw, client, addrs, *asJSON, *every)
	}
	return showStatus(out, errw, client, addrs, *asJSON, *pidOf)
}

// agentAddrs lists the API addresses of the config's agents.
func agentAddrs(cfg *config.Config) []string {
	var addrs []string
	for _, n := range cfg.Nodes {
		if !n.Witness {
			addrs = append(addrs, n.API)
		}
	}
	return addrs
}

// apiClient is the client of cfg's agents, with its token, who and timeout.
// Under TLS it verifies the agents with the cluster CA and presents the
// operator's certificate when it can read it (tls.cert_file with ${NODE}
// as "operator"); the token authorizes either way.
func apiClient(cfg *config.Config, who string, timeout time.Duration) (*api.Client, error) {
	o := api.ClientOptions{Token: cfg.APIAuth.Token, Who: who, Timeout: timeout}
	if cfg.TLS.Enabled() {
		t, err := certs.ClientTLS(certs.Files(cfg.TLS.For(certs.Operator)))
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		o.TLS = t
	}
	return api.NewClient(o), nil
}

// fetchStatus asks each agent in turn and returns the first answer from
// one that knows the leader, else the first answer.
func fetchStatus(ctx context.Context, client *api.Client, addrs []string) (api.Status, error) {
	var errs []error
	var first *api.Status
	for _, u := range addrs {
		st, err := client.Status(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !st.LeaderIsUnknown() {
			return st, nil
		}
		if first == nil {
			first = &st
		}
	}
	if first != nil {
		return *first, nil
	}
	return api.Status{}, fmt.Errorf("no agent answered (%w); is the cluster running?", errors.Join(errs...))
}

func printStatus(w io.Writer, st api.Status) {
	leader := "none"
	if st.LeaderIsUnknown() {
		leader = "unknown (" + st.LeaderUnknown + ")"
	} else if !st.Leader.None() {
		leader = fmt.Sprintf("%s at epoch %d", st.Leader.Node, st.Leader.Epoch)
	}
	fmt.Fprintf(w, "cluster %s (%s): active %s; as seen by %s\n\n", st.Cluster, st.Mode, leader, st.Reporter)
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n\n", warn)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSITE\tROLE\tHEALTHY\tEPOCH\tAGENT PID\tSERVICE PID\tSINCE\tWHY")
	for _, n := range st.Nodes {
		epoch := "-"
		if n.Epoch != 0 {
			epoch = fmt.Sprint(n.Epoch)
		}
		since := "-"
		if !n.Since.IsZero() {
			since = time.Since(n.Since).Round(time.Second).String() + " ago"
		}
		why := n.Reason
		if n.Role == "standby" || n.Role == "down" {
			why = n.Why
		}
		if n.HeldBy != "" {
			why += " (held back only by switchover " + n.HeldBy + ": available once it is over)"
		}
		if !n.Healthy && n.Health != "" {
			why = n.Health
		}
		site := n.Site
		if site == "" {
			site = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, site, n.Role, yesNo(n.Healthy), epoch,
			pid(n.AgentPID), pid(n.ServicePID), since, why)
	}
	_ = tw.Flush()
	if f := st.LastFailover; f != nil {
		fmt.Fprintf(w, "\nlast failover: %s lost, %s active at epoch %d %s after %s stopped renewing its lease (%s ago)\n",
			f.From, f.To, f.Epoch, f.Duration.Round(time.Millisecond), f.From, time.Since(f.Time).Round(time.Second))
	}
	printLockDelay(w, st.Nodes)
	printContainment(w, st.Nodes)
	printVIP(w, st.VIP)
	printSessions(w, st)
	printFolders(w, st)
}

// printFolders shows, per replicated folder and standby, how far the
// standby is behind the active, and what a promoted node lacked.
func printFolders(w io.Writer, st api.Status) {
	first := true
	for _, n := range st.Nodes {
		for _, f := range n.Folders {
			if first {
				fmt.Fprintln(w, "\nreplicated folders (sync:):")
				first = false
			}
			if f.Peer == "" {
				if f.Lost > 0 {
					fmt.Fprintf(w, "  %s on %s: %d files of the old active were lost at its promotion (haven events)\n", f.Folder, n.Name, f.Lost)
				}
				if f.Error != "" {
					fmt.Fprintf(w, "  %s on %s: WARNING %s\n", f.Folder, n.Name, f.Error)
				}
				continue
			}
			state := "in sync"
			switch {
			case f.Behind:
				state = "BEHIND max_lag"
			case f.Files > 0:
				state = "shipping"
			}
			line := fmt.Sprintf("  %s %s -> %s: %s, lacks %d files (%d bytes)", f.Folder, n.Name, f.Peer, state, f.Files, f.Bytes)
			if f.Files > 0 {
				line += fmt.Sprintf(", oldest %s changed %s ago", f.OldestPath, (time.Duration(f.OldestMS) * time.Millisecond).Round(time.Millisecond))
			}
			if f.Error != "" {
				line += "; last error: " + f.Error
			}
			fmt.Fprintln(w, line)
		}
	}
}

// printContainment says how each node keeps its service's processes
// together, one line per node that runs a supervised service.
func printContainment(w io.Writer, nodes []api.NodeView) {
	first := true
	for _, n := range nodes {
		if n.Containment == "" {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nservice containment (what dies with the agent, also on kill -9):")
			first = false
		}
		fmt.Fprintf(w, "  %s: %s\n", n.Name, n.Containment)
	}
}

// printSessions shows each node's copy of the session store, if any.
func printSessions(w io.Writer, st api.Status) {
	first := true
	for _, n := range st.Nodes {
		s := n.Sessions
		if s == nil {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nsessions (Redis protocol):")
			first = false
		}
		mode := "read-only copy"
		if s.Writable {
			mode = "takes writes"
		}
		line := fmt.Sprintf("  %s on %s: %d keys, %d bytes, %s", n.Name, s.Listen, s.Keys, s.Bytes, mode)
		if s.Log != nil && s.Layout == sessions.LayoutPacked {
			line += ", " + packedLogText(*s.Log, st.Time)
		}
		fmt.Fprintln(w, line)
	}
	if why := sessionsNote(st.Nodes, func(s *ha.SessionStats) string { return s.Waiting }); why != "" && !anyPacked(st.Nodes) {
		fmt.Fprintf(w, "  layout: one key per session; %s\n", why)
	}
	if warn := sessionsNote(st.Nodes, func(s *ha.SessionStats) string { return s.Warning }); warn != "" {
		fmt.Fprintf(w, "  WARNING: %s\n", warn)
	}
}

// anyPacked: a node has loaded the store in the packed layout, so it is
// packed (the migration is one-way), whatever the others' older records say.
func anyPacked(nodes []api.NodeView) bool {
	for _, n := range nodes {
		if n.Sessions != nil && n.Sessions.Layout == sessions.LayoutPacked {
			return true
		}
	}
	return false
}

// packedLogText describes the packed layout's log and snapshot as of now
// (the status's time).
func packedLogText(l ha.SessionLogStats, now time.Time) string {
	t := fmt.Sprintf("packed: log %d entries (%d bytes), ", l.LogEntries, l.LogBytes)
	if l.SnapshotAt > 0 {
		if now.IsZero() {
			now = time.Now()
		}
		age := max(now.Sub(time.UnixMilli(l.SnapshotAt)), 0).Round(time.Second)
		t += fmt.Sprintf("snapshot %d keys (%d bytes) %s old", l.SnapshotKeys, l.SnapshotBytes, age)
	} else {
		t += "no snapshot yet"
	}
	return t + fmt.Sprintf(", %d compactions", l.Compactions)
}

// sessionsNote is a note every node of the session store publishes alike
// (why the store is not packed yet, a warning), once: the active's, or the
// first node's that has one.
func sessionsNote(nodes []api.NodeView, note func(*ha.SessionStats) string) string {
	first := ""
	for _, n := range nodes {
		if n.Sessions == nil || note(n.Sessions) == "" {
			continue
		}
		if n.Sessions.Writable {
			return note(n.Sessions)
		}
		if first == "" {
			first = note(n.Sessions)
		}
	}
	return first
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func pid(p int) string {
	if p == 0 {
		return "-"
	}
	return fmt.Sprint(p)
}

// printVIP says where the cluster's virtual IP is: on one node, moving
// (held by none), or, which fencing should never allow, on several.
func printVIP(w io.Writer, v *api.VIPView) {
	if v == nil {
		return
	}
	what := "the active node"
	if v.Follows == "proxy" {
		what = "a node with a healthy proxy"
	}
	switch len(v.Holders) {
	case 0:
		fmt.Fprintf(w, "virtual IP %s is held by no node (it follows %s): it is moving, or no node can hold it; see haven events\n", v.Address, what)
	case 1:
		fmt.Fprintf(w, "virtual IP %s is on %s (it follows %s)\n", v.Address, v.Holders[0], what)
	default:
		fmt.Fprintf(w, "virtual IP %s is reported on %s at once (it follows %s): a record not yet updated, or a fault to report\n", v.Address, strings.Join(v.Holders, ", "), what)
	}
}

// printLockDelay shows a promotion waiting on the lock-delay, or the latest
// that waited (docs/stores.md: an etcd leader that froze and woke).
func printLockDelay(w io.Writer, nodes []api.NodeView) {
	for _, n := range nodes {
		printOneLockDelay(w, n.Name, n.LockDelay, "the old active's lease", "acting")
		printOneLockDelay(w, n.Name, n.VIPLockDelay, "the VIP's previous holder's lease", "adding the virtual IP")
	}
}

// printOneLockDelay prints d, a lock-delay of node's (nil: nothing).
func printOneLockDelay(w io.Writer, node string, d *ha.LockDelay, whose, what string) {
	switch {
	case d == nil:
	case !d.Until.IsZero():
		fmt.Fprintf(w, "\nlock delay: %s won epoch %d and waits until %s for %s to run out: %s\n",
			node, d.Epoch, d.Until.Format("15:04:05.000"), whose, d.Reason)
	default:
		fmt.Fprintf(w, "\nlock delay: %s waited %s before %s at epoch %d: %s\n",
			node, d.Waited.Round(time.Millisecond), what, d.Epoch, d.Reason)
	}
}
