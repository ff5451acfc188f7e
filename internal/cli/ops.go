package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// opsClient sends operator requests to the agents named in the config.
type opsClient struct {
	cfg *config.Config
	api *api.Client
}

func newOpsClient(cfg *config.Config) (*opsClient, error) {
	c, err := apiClient(cfg, operatorName(), 30*time.Second)
	return &opsClient{cfg: cfg, api: c}, err
}

// operatorName is who runs this command, user@host, for the audit log.
func operatorName() string {
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		who += "@" + h
	}
	return who
}

// anyAgent asks the agents in turn until one answers: do returns an
// error for which api.Unreachable is true to try the next.
func (c *opsClient) anyAgent(do func(addr string) error) error {
	var errs []error
	for _, u := range agentAddrs(c.cfg) {
		err := do(u)
		if err == nil || !api.Unreachable(err) {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no agent answered (%w); is the cluster running?", errors.Join(errs...))
}

// getAny reads from the first agent that answers 200.
func (c *opsClient) getAny(get func(addr string) error) error {
	var errs []error
	for _, u := range agentAddrs(c.cfg) {
		err := get(u)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no agent answered: %w", errors.Join(errs...))
}

func (c *opsClient) nodeAddr(name string) (string, error) {
	n, ok := c.cfg.NodeByName(name)
	if !ok {
		return "", fmt.Errorf("no node %q in %s; members: %s", name, c.cfg.Path, nodeNames(c.cfg))
	}
	if n.Witness {
		return "", fmt.Errorf("%s is a witness: it runs no service", name)
	}
	return n.API, nil
}

// heldTraffic samples every node's /lb-check every millisecond while f runs
// and returns the longest time, after some node stopped answering 200,
// until another node (or it again) answered 200: the traffic a load
// balancer following /lb-check would have had to hold.
func heldTraffic(cfg *config.Config, c *api.Client, f func() error) (time.Duration, error) {
	type sample struct {
		t  time.Time
		ok bool
	}
	addrs := agentAddrs(cfg)
	client := c.WithTimeout(100 * time.Millisecond)
	var mu sync.Mutex
	var samples []sample
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, u := range addrs {
		wg.Add(1)
		go func(u string) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ok, _ := client.LBCheck(context.Background(), u)
				now := time.Now()
				mu.Lock()
				samples = append(samples, sample{now, ok})
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}(u)
	}
	err := f()
	// Let the samplers see the new active for a moment.
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	// Walk the merged samples in time order: a gap is a stretch with no 200
	// from anyone, from the last 200 before it to the first 200 after it.
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(samples, func(i, j int) bool { return samples[i].t.Before(samples[j].t) })
	var held time.Duration
	var lastOK time.Time
	for _, s := range samples {
		if !s.ok {
			continue
		}
		if !lastOK.IsZero() && s.t.Sub(lastOK) > held {
			held = s.t.Sub(lastOK)
		}
		lastOK = s.t
	}
	return held, err
}

func runSwitchover(args []string, out, errw io.Writer) int {
	fs := newFlags("switchover", errw)
	cfgPath := configFlag(fs)
	to := fs.String("to", "", "the node to hand over to (default: the eligible standby with the highest priority)")
	force := fs.Bool("force", false, "hand over even if the target is unhealthy, in maintenance or not eligible")
	reason := fs.String("reason", "", "why, for the history")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	c, code := loadOps(*cfgPath, errw)
	if c == nil {
		return code
	}
	var res api.SwitchoverResult
	held, err := heldTraffic(c.cfg, c.api, func() error {
		return c.anyAgent(func(addr string) (err error) {
			res, err = c.api.Switchover(context.Background(), addr, api.SwitchoverRequest{To: *to, Force: *force, Reason: *reason})
			return err
		})
	})
	if err != nil {
		fmt.Fprintf(errw, "haven switchover: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(out, "switched over from %s to %s (epoch %d) in %.1f ms; traffic held (no node answering /lb-check 200): %.1f ms\n",
		res.From, res.To, res.Epoch, res.TookMS, float64(held.Microseconds())/1000)
	return exitOK
}

func runPromote(args []string, out, errw io.Writer) int {
	fs := newFlags("promote", errw)
	cfgPath := configFlag(fs)
	force := fs.Bool("force", false, "promote even while the active node is healthy (it is demoted first)")
	if code, ok := parse(fs, args, 1); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(errw, "usage: haven promote [--force] NODE")
		return exitUsage
	}
	c, code := loadOps(*cfgPath, errw)
	if c == nil {
		return code
	}
	var res api.SwitchoverResult
	if err := c.anyAgent(func(addr string) (err error) {
		res, err = c.api.Promote(context.Background(), addr, api.PromoteRequest{Node: fs.Arg(0), Force: *force})
		return err
	}); err != nil {
		fmt.Fprintf(errw, "haven promote: %v\n", err)
		return exitFailure
	}
	from := res.From
	if from == "" {
		from = "none"
	}
	fmt.Fprintf(out, "%s is active at epoch %d (before: %s), after %.1f ms\n", res.To, res.Epoch, from, res.TookMS)
	return exitOK
}

func runMaintenance(args []string, out, errw io.Writer) int {
	fs := newFlags("maintenance", errw)
	cfgPath := configFlag(fs)
	if code, ok := parse(fs, args, 2); !ok {
		return code
	}
	if fs.NArg() != 2 || (fs.Arg(0) != "on" && fs.Arg(0) != "off") {
		fmt.Fprintln(errw, "usage: haven maintenance on|off NODE")
		return exitUsage
	}
	c, code := loadOps(*cfgPath, errw)
	if c == nil {
		return code
	}
	var res api.MaintenanceResult
	if err := c.anyAgent(func(addr string) (err error) {
		res, err = c.api.Maintenance(context.Background(), addr, api.MaintenanceRequest{Node: fs.Arg(1), On: fs.Arg(0) == "on"})
		return err
	}); err != nil {
		fmt.Fprintf(errw, "haven maintenance: %v\n", err)
		return exitFailure
	}
	if res.Switchover != nil {
		fmt.Fprintf(out, "switched over from %s to %s (epoch %d) first\n", res.Switchover.From, res.Switchover.To, res.Switchover.Epoch)
	}
	fmt.Fprintf(out, "maintenance %s for %s\n", fs.Arg(0), res.Node)
	return exitOK
}

func runService(args []string, out, errw io.Writer) int {
	fs := newFlags("service", errw)
	cfgPath := configFlag(fs)
	force := fs.Bool("force", false, "also on the active node: switch over first")
	all := fs.Bool("all-standby", false, "act on every standby instead of one NODE")
	if len(args) == 0 || (args[0] != "start" && args[0] != "stop" && args[0] != "restart") {
		fmt.Fprintln(errw, "usage: haven service start|stop|restart [--force] NODE | --all-standby")
		return exitUsage
	}
	action := args[0]
	if code, ok := parse(fs, args[1:], 1); !ok {
		return code
	}
	if (fs.NArg() == 1) == *all {
		fmt.Fprintln(errw, "usage: haven service start|stop|restart [--force] NODE | --all-standby (name one node, or --all-standby)")
		return exitUsage
	}
	c, code := loadOps(*cfgPath, errw)
	if c == nil {
		return code
	}
	var targets []string
	if *all {
		st, err := fetchStatus(context.Background(), c.api, agentAddrs(c.cfg))
		if err != nil {
			fmt.Fprintf(errw, "haven service: %v\n", err)
			return exitFailure
		}
		for _, n := range st.Nodes {
			if !n.Witness && n.Role != ha.RoleActive && n.Role != ha.RoleDown && n.Role != ha.RolePromoting {
				targets = append(targets, n.Name)
			}
		}
	} else {
		targets = []string{fs.Arg(0)}
	}
	failed := false
	for _, name := range targets {
		addr, err := c.nodeAddr(name)
		if err == nil {
			var res api.ServiceResult
			if res, err = c.api.Service(context.Background(), addr, api.ServiceRequest{Action: action, Force: *force}); err == nil {
				fmt.Fprintf(out, "%s: service %s done (pid %d)\n", name, action, res.PID)
				continue
			}
		}
		failed = true
		fmt.Fprintf(errw, "haven service %s %s: %v\n", action, name, err)
	}
	if failed {
		return exitFailure
	}
	return exitOK
}

func runEvents(args []string, out, errw io.Writer) int {
	fs := newFlags("events", errw)
	cfgPath := configFlag(fs)
	limit := fs.Int("limit", 50, "how many of the newest events")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	if *limit < 1 || *limit > 2000 {
		fmt.Fprintln(errw, "haven events: --limit must be from 1 to 2000")
		return exitUsage
	}
	c, code := loadOps(*cfgPath, errw)
	if c == nil {
		return code
	}
	var evs []ha.Event
	if err := c.getAny(func(addr string) (err error) {
		evs, err = c.api.Events(context.Background(), addr, *limit)
		return err
	}); err != nil {
		fmt.Fprintf(errw, "haven events: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(evs)
		return exitOK
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tNODE\tKIND\tCHANGE\tEPOCH\tDURATION\tWHO\tREASON")
	for _, e := range evs {
		change := e.To
		if e.From != "" {
			change = e.From + " -> " + e.To
		}
		epoch, dur := "-", "-"
		if e.Epoch != 0 {
			epoch = fmt.Sprint(e.Epoch)
		}
		if e.Duration != 0 {
			dur = e.Duration.Round(100 * time.Microsecond).String()
		}
		who := e.Who
		if who == "" {
			who = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Node, e.Kind, change, epoch, dur, who, e.Reason)
	}
	_ = tw.Flush()
	return exitOK
}

// loadOps loads the configuration at path and makes the operator's API
// client from it; on failure it has told errw why and returns the exit code.
func loadOps(path string, errw io.Writer) (*opsClient, int) {
	cfg, code := loadConfig(path, errw)
	if cfg == nil {
		return nil, code
	}
	c, err := newOpsClient(cfg)
	if err != nil {
		fmt.Fprintf(errw, "haven: %v\n", err)
		return nil, exitFailure
	}
	return c, exitOK
}
