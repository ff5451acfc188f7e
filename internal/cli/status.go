package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
)

func runStatus(args []string, out, errw io.Writer) int {
	fs := newFlags("status", errw)
	cfgPath := configFlag(fs)
	apiURL := fs.String("api", "", "ask this agent (base URL) instead of the ones in the config")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	var addrs []string
	var client *api.Client
	if *apiURL != "" {
		addrs = []string{strings.TrimRight(*apiURL, "/")}
		client = api.NewClient(api.ClientOptions{Timeout: 2 * time.Second})
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
	st, err := fetchStatus(context.Background(), client, addrs)
	if err != nil {
		fmt.Fprintf(errw, "haven status: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return exitOK
	}
	printStatus(out, st)
	return exitOK
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

// fetchStatus asks each agent in turn and returns the first answer.
func fetchStatus(ctx context.Context, client *api.Client, addrs []string) (api.Status, error) {
	var errs []error
	for _, u := range addrs {
		st, err := client.Status(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return st, nil
	}
	return api.Status{}, fmt.Errorf("no agent answered (%w); is the cluster running?", errors.Join(errs...))
}

func printStatus(w io.Writer, st api.Status) {
	leader := "none"
	if !st.Leader.None() {
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
