package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

func runMembers(args []string, out, errw io.Writer) int {
	usage := "usage: haven members [list] | add NODE | remove NODE  (--config FILE)"
	action := "list"
	if len(args) > 0 && (args[0] == "list" || args[0] == "add" || args[0] == "remove") {
		action, args = args[0], args[1:]
	}
	fs := newFlags("members", errw)
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "print the member list as JSON")
	if code, ok := parse(fs, args, 1); !ok {
		return code
	}
	if (action == "list") != (fs.NArg() == 0) {
		fmt.Fprintln(errw, usage)
		return exitUsage
	}
	c, code := loadOps(*cfgPath, errw)
	if c == nil {
		return code
	}
	var list []ha.Member
	if action == "list" {
		if err := c.getAny(func(addr string) (err error) {
			list, err = c.api.Members(context.Background(), addr)
			return err
		}); err != nil {
			fmt.Fprintf(errw, "haven members: %v\n", err)
			return exitFailure
		}
	} else {
		node := fs.Arg(0)
		// Ask a node other than the one leaving: it would lose its store
		// in the middle of answering.
		var err error = fmt.Errorf("no other agent to ask")
		for _, n := range c.cfg.Nodes {
			if n.Witness || n.Name == node {
				continue
			}
			if list, err = c.api.ChangeMembers(context.Background(), n.API, api.MembersRequest{Action: action, Node: node}); err == nil || !api.Unreachable(err) {
				break
			}
		}
		if err != nil {
			fmt.Fprintf(errw, "haven members %s %s: %v\n", action, node, err)
			return exitFailure
		}
		if action == "add" {
			if c.cfg.TLS.Enabled() {
				fmt.Fprintf(out, "(give %s its certificate first if it has none: haven certs add --config %s %s)\n", node, c.cfg.Path, node)
			}
			fmt.Fprintf(out, "%s added; now start its agent: haven agent --config %s --node %s\n", node, c.cfg.Path, node)
		} else {
			fmt.Fprintf(out, "%s removed; its session has ended, so it no longer serves and cannot again (its agent stops with its etcd member); you can remove it from the config on every node\n", node)
		}
	}
	if *asJSON && action == "list" {
		return writeJSON(out, list)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tPEER\tJOINED\tHEALTHY\tETCD LEADER")
	for _, m := range list {
		name := m.Name
		if name == "" {
			name = "(joining)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, m.Peer, yesNo(m.Started), yesNo(m.Healthy), yesNo(m.Leader))
	}
	_ = tw.Flush()
	return exitOK
}
