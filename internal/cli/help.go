package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/store/storedial"
)

// usageLines are each command's synopses: its positional arguments and
// subcommand words, which the flag package cannot show. `haven CMD -h`,
// `haven help CMD` and a flag error print them above the flags.
var usageLines = map[string][]string{
	"demo":           {"haven demo [--nodes 1|3|5] [--port PORT] [--dir DIR]"},
	"agent":          {"haven agent --config FILE --node NAME"},
	"witness":        {"haven witness --config FILE --node NAME"},
	"status":         {"haven status --config FILE [--json] [--watch] [--active-pid service|agent]", "haven status --api https://HOST:PORT --cacert CA.crt [--cert FILE --key FILE] [--json] [--watch]"},
	"switchover":     {"haven switchover --config FILE [--to NODE] [--force] [--reason TEXT]"},
	"maintenance":    {"haven maintenance --config FILE on|off NODE"},
	"promote":        {"haven promote --config FILE [--force] NODE"},
	"service":        {"haven service start|stop|restart --config FILE [--force] NODE", "haven service start|stop|restart --config FILE --all-standby"},
	"events":         {"haven events --config FILE [--limit N] [--json]"},
	"members":        {"haven members [list] --config FILE [--json]", "haven members add --config FILE NODE", "haven members remove --config FILE NODE"},
	"proxy":          {"haven proxy --config FILE [--listen ADDR]"},
	"drill":          {"haven drill --sandbox [--scenario A,B] [--store NAME] [--json]", "haven drill --config FILE --scenario NAME [--node NODE]"},
	"bench-backend":  {"haven bench-backend [--listen ADDR]"},
	"store":          {"haven store export --config FILE > dump.json", "haven store import --config FILE [--file dump.json] [--force] < dump.json", "haven store snapshot save --config FILE OUT.db", "haven store snapshot restore --config FILE --node NODE [--force] [--min-epoch N] [--margin N] IN.db"},
	"recover":        {"haven recover --config FILE --node SURVIVOR [--min-epoch N] [--margin N] --yes"},
	"config":         {"haven config check [--json] FILE"},
	"version":        {"haven version [--json]", "haven --version"},
	"sample-service": {"haven sample-service --listen ADDR --agent ADDR [--node NAME]"},
	"dashboard":      {"haven dashboard hash-password [--cost N] < password"},
	"help":           {"haven help [COMMAND]"},
	"completion":     {"haven completion bash|zsh|fish"},
	"init":           {"haven init --cluster NAME --node NAME=HOST [--node ...] [--witness NAME=HOST] [--store embedded|etcd|postgres|mysql] --out DIR"},
	"certs":          {"haven certs init --config FILE [--out DIR]", "haven certs add --config FILE [--out DIR] NODE"},
}

// helpArgs are the arguments that bring a command to its flag parsing
// without side effects, for commands that read a subcommand word first.
var helpArgs = map[string][]string{
	"config":    {"check"},
	"store":     {"export"},
	"dashboard": {"hash-password"},
	"service":   {"start"},
	"members":   {"list"},
	"certs":     {"init"},
}

// helpSubcommands are subcommands whose flags differ from the command's:
// `haven help CMD` prints theirs after the command's.
var helpSubcommands = map[string][][]string{
	"store": {{"snapshot", "restore"}},
}

// subcommandWords are the words shell completion offers after a command.
var subcommandWords = map[string][]string{
	"config":      {"check"},
	"store":       {"export", "import", "snapshot"},
	"dashboard":   {"hash-password"},
	"service":     {"start", "stop", "restart"},
	"members":     {"list", "add", "remove"},
	"maintenance": {"on", "off"},
	"completion":  {"bash", "zsh", "fish"},
	"certs":       {"init", "add"},
}

// setUsage makes fs print the command's synopses, then its flags.
func setUsage(fs *flag.FlagSet, name string) {
	top, _, _ := strings.Cut(strings.TrimPrefix(fs.Name(), "haven "), " ")
	if name != "" {
		top = name
	}
	fs.Usage = func() {
		w := fs.Output()
		printSynopsis(w, top)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			fmt.Fprintln(w, "\nNo flags.")
			return
		}
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	}
}

func printSynopsis(w io.Writer, name string) {
	lines := usageLines[name]
	if len(lines) == 0 {
		lines = []string{"haven " + name + " [flags]"}
	}
	fmt.Fprintln(w, "Usage:")
	for _, l := range lines {
		fmt.Fprintln(w, "  "+l)
	}
}

// wantsHelp reports whether args ask for help: -h, -help or --help before
// a "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// printHelp prints a command's summary, synopses and flags to out.
func printHelp(c command, out io.Writer) int {
	fmt.Fprintf(out, "haven %s: %s\n\n", c.name, c.summary)
	// The command prints its synopses and flags itself on -h, from the
	// flag set it really parses, so the two cannot drift.
	var buf bytes.Buffer
	code := c.run(append(append([]string{}, helpArgs[c.name]...), "-h"), &buf, &buf)
	if code != exitOK || !strings.Contains(buf.String(), "Usage:\n  haven "+c.name) {
		printSynopsis(out, c.name)
		return exitOK
	}
	_, _ = out.Write(buf.Bytes())
	for _, sub := range helpSubcommands[c.name] {
		// A subcommand with flags of its own: print them too.
		var sb bytes.Buffer
		if c.run(append(append([]string{}, sub...), "-h"), &sb, &sb) == exitOK {
			if _, flags, ok := strings.Cut(sb.String(), "\nFlags:\n"); ok {
				fmt.Fprintf(out, "\nFlags of haven %s %s:\n%s", c.name, strings.Join(sub, " "), flags)
			}
		}
	}
	if c.name == "status" {
		fmt.Fprint(out, statusExitHelp)
	}
	return exitOK
}

// runHelp is `haven help [COMMAND]`.
func runHelp(args []string, out, errw io.Writer) int {
	if wantsHelp(args) || (len(args) == 1 && args[0] == "help") {
		printSynopsis(out, "help")
		fmt.Fprintln(out)
	}
	if len(args) == 0 || wantsHelp(args) || args[0] == "help" {
		usage(out)
		return exitOK
	}
	if len(args) > 1 {
		fmt.Fprintln(errw, "usage: haven help [COMMAND]")
		return exitUsage
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return printHelp(c, out)
		}
	}
	fmt.Fprintf(errw, "haven help: unknown command %q; run `haven help` for the list\n", args[0])
	return exitUsage
}

// buildVersion is haven's version and what it was built from: the
// -ldflags version if one was set, else the module version from the
// build info, plus the VCS revision and the Go version when known.
type buildVersion struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

func readBuildVersion() buildVersion {
	v := buildVersion{Version: Version}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Go = bi.GoVersion
	if Version == defaultVersion && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func (v buildVersion) String() string {
	s := "haven " + v.Version
	var extra []string
	if v.Revision != "" {
		r := v.Revision
		if len(r) > 12 {
			r = r[:12]
		}
		if v.Modified {
			r += "+dirty"
		}
		extra = append(extra, "commit "+r)
	}
	if v.Time != "" {
		extra = append(extra, v.Time)
	}
	if v.Go != "" {
		extra = append(extra, v.Go)
	}
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	}
	return s
}

func runVersionInfo(args []string, out, errw io.Writer) int {
	fs := newFlags("version", errw)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	v := readBuildVersion()
	if *asJSON {
		return writeJSON(out, v)
	}
	fmt.Fprintln(out, v.String())
	return exitOK
}

func writeJSON(out io.Writer, v any) int {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitFailure
	}
	return exitOK
}

// visibleCommands are the names `haven help` lists, sorted, for completion.
func visibleCommands() []string {
	var names []string
	for _, c := range commands() {
		if !c.hidden {
			names = append(names, c.name)
		}
	}
	sort.Strings(names)
	return names
}

// configCheckJSON is `haven config check --json FILE`: whether the file is
// valid, and what is wrong with it; exit 2 when it is not.
func configCheckJSON(path string, out io.Writer) int {
	res := struct {
		File  string `json:"file"`
		Valid bool   `json:"valid"`
		Error string `json:"error,omitempty"`
	}{File: path}
	cfg, err := config.Load(path)
	if err == nil {
		err = storedial.CheckDSN(cfg)
	}
	if err != nil {
		res.Error = err.Error()
	} else {
		res.Valid = true
	}
	_ = writeJSON(out, res)
	if !res.Valid {
		return exitUsage
	}
	return exitOK
}
