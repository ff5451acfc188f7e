// Package cli holds haven's subcommands and the wiring between the packages:
// it reads flags and configuration, builds the parts and runs them. Exit
// codes: 0 success, 1 a runtime failure, 2 bad input (flags or config).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/node"
	"github.com/haven-ha/haven/internal/sample"
	"github.com/haven-ha/haven/internal/store/storedial"
)

// Version is haven's version, set at build time with -ldflags
// (-X github.com/haven-ha/haven/internal/cli.Version=1.2.3); when it is not,
// `haven version` reports the module version from the build info.
var Version = defaultVersion

const defaultVersion = "0.1.0-dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name, summary string
	hidden        bool
	run           func(args []string, out, errw io.Writer) int
}

func commands() []command {
	return []command{
		{"demo", "start a 3-node cluster on loopback and show it fail over", false, runDemo},
		{"agent", "run the agent of one node (--config FILE --node NAME)", false, runAgent},
		{"witness", "run a witness: an etcd vote and nothing else (--config FILE --node NAME)", false, runWitness},
		{"status", "show every node's role and health (--config FILE, --json, --watch); exits 0 ok, 1 degraded, 3 no active", false, runStatus},
		{"switchover", "hand the active role to another node (--to NODE)", false, runSwitchover},
		{"maintenance", "take a node out of elections: maintenance on|off NODE", false, runMaintenance},
		{"promote", "make a node active (passive-backup mode): promote NODE", false, runPromote},
		{"service", "start|stop|restart the service on a node or --all-standby", false, runService},
		{"events", "the cluster's history: role changes, switchovers, operator actions", false, runEvents},
		{"members", "list, add or remove the store's voting members: members [list|add NODE|remove NODE]", false, runMembers},
		{"proxy", "run haven's proxy on its own: clients reach the active node (--config FILE)", false, runProxy},
		{"drill", "measure failover: RTO, errors, lost writes, split brain per fault (--sandbox)", false, runDrill},
		{"bench-backend", "a minimal HTTP backend for bench/proxy.sh", true, runBenchBackend},
		{"store", "move a cluster between stores, back it up or restore it: store export|import|snapshot save|snapshot restore --config FILE", false, runStore},
		{"config", "check a configuration file: `haven config check FILE`", false, runConfig},
		{"certs", "make the cluster's CA and certificates: certs init|add (--config FILE)", false, runCerts},
		{"version", "print haven's version and build (also --version)", false, runVersionInfo},
		{"sample-service", "the demo's sample HTTP service", true, runSample},
		{"dashboard", "dashboard helpers: `haven dashboard hash-password` (stdin to bcrypt)", false, runDashboard},
		{"help", "show a command's usage: help COMMAND", false, runHelp},
		{"recover", "rebuild a cluster that lost its majority for good from the surviving node: recover --node NODE --yes", false, runRecover},
		{"init", "write a new cluster's config, token, certificates and dashboard login: init --cluster C --node n1=HOST ...", false, runInit},
		{"completion", "print a shell completion script: completion bash|zsh|fish", false, runCompletion},
	}
}

// Main runs haven with args (without the program name) and returns the exit code.
func Main(args []string, out, errw io.Writer) int {
	agent.Version = readBuildVersion().Version
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(out)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "--version" || args[0] == "-version" {
		return runVersionInfo(args[1:], out, errw)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			if c.name != "help" && wantsHelp(args[1:]) {
				return printHelp(c, out)
			}
			return c.run(args[1:], out, errw)
		}
	}
	fmt.Fprintf(errw, "haven: unknown command %q; run `haven help` for the list\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "haven makes a service highly available.\n\nUsage: haven COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nRun `haven help COMMAND` (or `haven COMMAND -h`) for a command's usage and flags. Start with `haven demo`.")
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, errw io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("haven "+name, flag.ContinueOnError)
	fs.SetOutput(errw)
	setUsage(fs, "")
	return fs
}

// parse parses flags and refuses stray arguments; it returns an exit code
// and false when the command must stop.
func parse(fs *flag.FlagSet, args []string, maxArgs int) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > maxArgs {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q; flags go before arguments, see -h\n", fs.Name(), fs.Arg(maxArgs))
		return exitUsage, false
	}
	return 0, true
}

// loadConfig reads the config and prints what is wrong with it.
func loadConfig(path string, errw io.Writer) (*config.Config, int) {
	if path == "" {
		fmt.Fprintln(errw, "haven: no configuration: pass --config FILE or set HAVEN_CONFIG")
		return nil, exitUsage
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(errw, "haven: %v\n", err)
		return nil, exitUsage
	}
	return cfg, exitOK
}

func nodeFlag(fs *flag.FlagSet) *string {
	return fs.String("node", os.Getenv("HAVEN_NODE"), "this node's name in the config (default $HAVEN_NODE)")
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", os.Getenv("HAVEN_CONFIG"), "configuration file (default $HAVEN_CONFIG)")
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	logLevel.Set(cfg.Log.Level.Slog())
	opts := &slog.HandlerOptions{Level: &logLevel}
	if cfg.Log.Format == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func requireNode(cfg *config.Config, name string, errw io.Writer) bool {
	if name == "" {
		fmt.Fprintf(errw, "haven: which node is this? pass --node NAME or set HAVEN_NODE (one of: %s)\n", nodeNames(cfg))
		return false
	}
	if _, ok := cfg.NodeByName(name); !ok {
		fmt.Fprintf(errw, "haven: node %q is not in %s; use one of: %s\n", name, cfg.Path, nodeNames(cfg))
		return false
	}
	return true
}

func nodeNames(cfg *config.Config) string {
	var names []string
	for _, n := range cfg.Nodes {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func runAgent(args []string, out, errw io.Writer) int {
	return runNode("agent", args, errw, func(ctx context.Context, cfg *config.Config, name string) error {
		if len(cfg.AgentErrors) > 0 {
			printTraps(cfg, io.Discard, errw)
			return fmt.Errorf("%s: fix the errors above (haven config check %s lists them)", cfg.Path, cfg.Path)
		}
		// The log file feeds the dashboard.
		log := newLogger(cfg, agent.TeeLog(cfg, name, errw))
		for _, p := range cfg.Warnings {
			log.Warn("config: " + formatProblem(cfg.Path, p))
		}
		hup := reloadOnHUP(ctx, cfg, log.With("node", name))
		return node.RunNode(ctx, cfg, name, log, hup)
	})
}

func runWitness(args []string, out, errw io.Writer) int {
	return runNode("witness", args, errw, func(ctx context.Context, cfg *config.Config, name string) error {
		log := newLogger(cfg, errw)
		reloadOnHUP(ctx, cfg, log.With("node", name))
		return node.RunWitness(ctx, cfg, name, log)
	})
}

// runNode parses --config and --node and runs one node until SIGINT/SIGTERM.
func runNode(name string, args []string, errw io.Writer, run func(context.Context, *config.Config, string) error) int {
	fs := newFlags(name, errw)
	cfgPath, node := configFlag(fs), nodeFlag(fs)
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	cfg, code := loadConfig(*cfgPath, errw)
	if cfg == nil {
		return code
	}
	if !requireNode(cfg, *node, errw) {
		return exitUsage
	}
	if err := storedial.CheckDSN(cfg); err != nil {
		fmt.Fprintf(errw, "haven: %v\n", err)
		return exitUsage
	}
	if err := cfg.CheckSecure(); err != nil {
		fmt.Fprintf(errw, "haven: %v\n", err)
		return exitUsage
	}
	leanGC()
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, cfg, *node); err != nil {
		fmt.Fprintf(errw, "haven %s: %v\n", name, err)
		return exitFailure
	}
	return exitOK
}

func runConfig(args []string, out, errw io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(errw, "usage: haven config check FILE")
		return exitUsage
	}
	fs := newFlags("config check", errw)
	asJSON := fs.Bool("json", false, `print {"file", "valid", "error"} as JSON`)
	if code, ok := parse(fs, args[1:], 1); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(errw, "usage: haven config check FILE")
		return exitUsage
	}
	if *asJSON {
		return configCheckJSON(fs.Arg(0), out)
	}
	cfg, code := loadConfig(fs.Arg(0), errw)
	if cfg == nil {
		return code
	}
	if err := storedial.CheckDSN(cfg); err != nil {
		fmt.Fprintf(errw, "haven: %v\n", err)
		return exitUsage
	}
	if err := checkTLS(cfg, out); err != nil {
		fmt.Fprintf(errw, "haven: %v\n", err)
		return exitUsage
	}
	fmt.Fprint(out, cfg.Describe())
	if printTraps(cfg, out, errw) {
		return exitUsage
	}
	if w := cfg.InsecureWarning(); w != "" {
		fmt.Fprintf(errw, "haven: WARNING: %s\n", w)
	}
	return exitOK
}

func runSample(args []string, out, errw io.Writer) int {
	fs := newFlags("sample-service", errw)
	listen := fs.String("listen", os.Getenv("SERVICE_ADDR"), "address to serve on (default $SERVICE_ADDR)")
	agentAPI := fs.String("agent", os.Getenv("HAVEN_API"), "the local agent's API address (default $HAVEN_API)")
	node := fs.String("node", os.Getenv("HAVEN_NODE"), "node name (default $HAVEN_NODE)")
	cert := fs.String("tls-cert", os.Getenv("SERVICE_TLS_CERT"), "serve HTTPS with this PEM certificate (default $SERVICE_TLS_CERT); needs --tls-key")
	key := fs.String("tls-key", os.Getenv("SERVICE_TLS_KEY"), "the certificate's PEM key (default $SERVICE_TLS_KEY)")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	if *listen == "" || *agentAPI == "" {
		fmt.Fprintln(errw, "haven sample-service: --listen and --agent are required")
		return exitUsage
	}
	if (*cert == "") != (*key == "") {
		fmt.Fprintln(errw, "haven sample-service: --tls-cert and --tls-key go together; give both to serve HTTPS, or neither")
		return exitUsage
	}
	base := *agentAPI
	if !strings.Contains(base, "://") {
		if os.Getenv("HAVEN_TLS_CA") != "" {
			base = "https://" + base
		} else {
			base = "http://" + base
		}
	}
	ctx, stop := signalContext()
	defer stop()
	if err := sample.New(*node, base).ListenAndServe(ctx, *listen, *cert, *key); err != nil {
		fmt.Fprintf(errw, "haven sample-service: %v\n", err)
		return exitFailure
	}
	return exitOK
}
