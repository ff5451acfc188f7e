package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/dbserver"
	"github.com/haven-ha/haven/internal/drill"
)

// runDrill measures failover: on a sandbox cluster it builds, every
// scenario; on a real cluster (--config), only the safe ones and only when
// the config allows it.
func runDrill(args []string, out, errw io.Writer) int {
	fs := newFlags("drill", errw)
	sandbox := fs.Bool("sandbox", false, "build a 3-node cluster and a proxy on this machine and drill it (network namespaces when root)")
	cfgPath := fs.String("config", "", "drill this real cluster instead (needs drill: {enabled: true} in the file)")
	scenarios := fs.String("scenario", "", "comma-separated scenarios (default: all; with --config exactly one of "+strings.Join(drill.RealScenarios, ", ")+")")
	jsonOut := fs.Bool("json", false, "print the report as JSON instead of a table")
	markdown := fs.String("markdown", "", "also write a Markdown report to FILE, with its plot in FILE's name + .svg")
	timing := fs.String("timing", "lan", "sandbox timings: lan (the preset), lan-fast (the 1s-lease preset) or ci (lease 3s and a 1s health check timeout, for loaded machines)")
	clients := fs.Int("clients", 4, "concurrent clients through the proxy")
	dir := fs.String("dir", "", "sandbox directory (default: a temporary one, removed afterwards)")
	noNetns := fs.Bool("no-netns", false, "sandbox on loopback only, even as root (the network scenarios are skipped)")
	store := fs.String("store", drill.StoreEmbedded, "sandbox store: "+strings.Join(drill.Stores, ", ")+" (a throwaway database server on loopback, from Debian's packages; runs without network namespaces)")
	node := fs.String("node", "", "with --config: the node to act on (default: the active)")
	target := fs.String("target", "", "with --config: the URL clients use (default: http://proxy.listen)")
	path := fs.String("path", "/", "with --config: the path clients GET")
	opsFile := fs.String("ops", "", "also write every request the clients made to FILE (JSON lines)")
	vip := fs.Bool("vip", false, "sandbox: give the cluster a virtual IP and send the clients to it instead of the proxy (network namespaces: root)")
	vipFollow := fs.String("vip-follow", "active", "with --vip: what the VIP follows: active (the active node; clients reach the service), or proxy (a proxy in every agent; clients go through the proxies)")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	var names []string
	if *scenarios != "" {
		names = strings.Split(*scenarios, ",")
	}
	switch {
	case *sandbox == (*cfgPath != ""):
		fmt.Fprintln(errw, "haven drill: give either --sandbox (a cluster the drill builds) or --config FILE --scenario NAME (a real cluster)")
		return exitUsage
	case *cfgPath != "":
		return drillReal(*cfgPath, names, *node, *target, *path, *clients, *jsonOut, out, errw)
	}
	if *timing != "lan" && *timing != "lan-fast" && *timing != "ci" {
		fmt.Fprintln(errw, "haven drill: --timing is lan, lan-fast or ci")
		return exitUsage
	}
	if *vipFollow != "active" && *vipFollow != "proxy" || *vipFollow == "proxy" && !*vip {
		fmt.Fprintln(errw, "haven drill: --vip-follow is active or proxy, and needs --vip")
		return exitUsage
	}
	if !slices.Contains(drill.Stores, *store) {
		fmt.Fprintf(errw, "haven drill: --store is one of %s\n", strings.Join(drill.Stores, ", "))
		return exitUsage
	}
	for _, n := range names {
		if !slices.Contains(drill.Names(), n) {
			fmt.Fprintf(errw, "haven drill: no scenario %q; the scenarios are %s\n", n, strings.Join(drill.Names(), ", "))
			return exitUsage
		}
	}
	ctx, stop := signalContext()
	defer stop()
	progress := errw
	netns := os.Geteuid() == 0 && !*noNetns && *store == drill.StoreEmbedded
	start := time.Now()
	fmt.Fprintf(progress, "haven drill: building the sandbox (3 agents + proxy, %s, store %s)...\n", map[bool]string{true: "network namespaces", false: "loopback"}[netns], *store)
	if *vip && !netns {
		fmt.Fprintln(errw, "haven drill: --vip needs the sandbox in network namespaces: run as root, without --no-netns, with the embedded store")
		return exitUsage
	}
	sb, err := drill.NewSandbox(ctx, drill.SandboxOptions{Dir: *dir, Netns: netns, Timing: *timing, Store: *store, Log: progress, VIP: *vip, VIPFollowProxy: *vipFollow == "proxy", Sessions: true, Folders: true})
	if err != nil {
		fmt.Fprintf(errw, "haven drill: %v\n", err)
		if errors.Is(err, dbserver.ErrMissing) {
			return exitUsage
		}
		return exitFailure
	}
	defer sb.Close()
	results, err := drill.Run(ctx, sb, drill.Options{Scenarios: names, Clients: *clients, Log: progress})
	if err != nil && !errors.Is(err, ctx.Err()) {
		fmt.Fprintf(errw, "haven drill: %v\n", err)
		return exitFailure
	}
	var all []drill.Op
	for _, r := range results {
		all = append(all, r.Ops...)
	}
	lin, n := drill.Linearizable(all, time.Minute)
	rep := drill.Report{
		Time: start, Command: "haven drill " + strings.Join(args, " "), Machine: drill.Machine(),
		Sandbox: map[bool]string{true: "3 agents in network namespaces + a haven proxy", false: "3 agents on loopback + a haven proxy"}[netns] + sandboxStore(*store) + map[bool]string{true: "; clients through the virtual IP, not the proxy", false: ""}[*vip && *vipFollow == "active"] + map[bool]string{true: "; a proxy in every agent, clients through the virtual IP that follows a healthy one", false: ""}[*vip && *vipFollow == "proxy"],
		Timing:  *timing, Clients: *clients, Results: results, Duration: time.Since(start).Seconds(),
		Linearize: fmt.Sprintf("%s (%d operations)", lin, n),
	}
	if *opsFile != "" {
		if err := writeOps(*opsFile, results); err != nil {
			fmt.Fprintf(errw, "haven drill: %v\n", err)
			return exitFailure
		}
	}
	if *jsonOut {
		if err := drill.WriteJSON(out, rep); err != nil {
			fmt.Fprintf(errw, "haven drill: %v\n", err)
			return exitFailure
		}
	} else {
		drill.WriteTable(out, results)
		fmt.Fprintf(out, "\nshared registers linearizable: %s\n", rep.Linearize)
	}
	if *markdown != "" {
		if err := writeDrillMarkdown(*markdown, rep); err != nil {
			fmt.Fprintf(errw, "haven drill: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(errw, "haven drill: wrote %s and %s\n", *markdown, svgName(*markdown))
	}
	for _, r := range results {
		if r.Verdict != "met" && r.Verdict != "skipped" {
			return exitFailure
		}
	}
	if lin == "Illegal" {
		return exitFailure
	}
	return exitOK
}

func sandboxStore(store string) string {
	if store == drill.StoreEmbedded {
		return ", embedded etcd"
	}
	return ", a shared " + store + " server"
}

func svgName(md string) string { return strings.TrimSuffix(md, filepath.Ext(md)) + ".svg" }

func writeDrillMarkdown(path string, rep drill.Report) error {
	svg := svgName(path)
	f, err := os.Create(svg)
	if err != nil {
		return err
	}
	if err := drill.WriteSVG(f, rep.Results); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	m, err := os.Create(path)
	if err != nil {
		return err
	}
	drill.WriteMarkdown(m, rep, filepath.Base(svg))
	return m.Close()
}

func drillReal(cfgPath string, names []string, node, target, path string, clients int, jsonOut bool, out, errw io.Writer) int {
	cfg, code := loadConfig(cfgPath, errw)
	if cfg == nil {
		return code
	}
	if !cfg.Drill.Enabled {
		fmt.Fprintf(errw, "haven drill: %s does not allow drills: add `drill: {enabled: true}` to it on purpose (a drill moves the active role and kills processes)\n", cfg.Path)
		return exitUsage
	}
	if len(names) != 1 {
		fmt.Fprintf(errw, "haven drill: with --config give exactly one --scenario: %s\n", strings.Join(drill.RealScenarios, ", "))
		return exitUsage
	}
	if !slices.Contains(drill.RealScenarios, names[0]) {
		fmt.Fprintf(errw, "haven drill: %q is not safe on a real cluster; use one of %s, or --sandbox for every scenario\n", names[0], strings.Join(drill.RealScenarios, ", "))
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := drill.RunReal(ctx, drill.RealOptions{Config: cfg, Scenario: names[0], Node: node, Target: target, Path: path, Clients: clients,
		Log: func(format string, args ...any) { fmt.Fprintf(errw, "haven drill: "+format+"\n", args...) }})
	if err != nil {
		fmt.Fprintf(errw, "haven drill: %v\n", err)
		if errors.Is(err, drill.ErrNotEnabled) {
			return exitUsage
		}
		return exitFailure
	}
	if jsonOut {
		_ = drill.WriteJSON(out, drill.Report{Time: time.Now(), Command: "haven drill --config " + cfgPath, Machine: drill.Machine(), Sandbox: "real cluster " + cfg.Cluster, Results: []drill.Result{res}})
	} else {
		drill.WriteTable(out, []drill.Result{res})
	}
	if res.Verdict != "met" {
		return exitFailure
	}
	return exitOK
}

func writeOps(path string, results []drill.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, r := range results {
		for _, op := range r.Ops {
			if err := enc.Encode(struct {
				Scenario string `json:"scenario"`
				drill.Op
			}{r.Name, op}); err != nil {
				f.Close()
				return err
			}
		}
	}
	return f.Close()
}
