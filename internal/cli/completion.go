package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// runCompletion prints a shell completion script. The scripts are static:
// commands, subcommand words and each command's flags, read from the
// commands' own flag sets (their -h output), so they cannot drift.
func runCompletion(args []string, out, errw io.Writer) int {
	fs := newFlags("completion", errw)
	if code, ok := parse(fs, args, 1); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(errw, "usage: haven completion bash|zsh|fish   (e.g. haven completion bash > /etc/bash_completion.d/haven)")
		return exitUsage
	}
	switch fs.Arg(0) {
	case "bash":
		fmt.Fprint(out, bashCompletion())
	case "zsh":
		fmt.Fprint(out, zshCompletion())
	case "fish":
		fmt.Fprint(out, fishCompletion())
	default:
		fmt.Fprintf(errw, "haven completion: unknown shell %q; use bash, zsh or fish\n", fs.Arg(0))
		return exitUsage
	}
	return exitOK
}

// commandFlags returns the flags of the command name, as "--flag".
func commandFlags(name string) []string {
	for _, c := range commands() {
		if c.name != name || name == "completion" || name == "help" {
			continue
		}
		var buf bytes.Buffer
		c.run(append(append([]string{}, helpArgs[name]...), "-h"), &buf, &buf)
		var flags []string
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "  -") {
				continue
			}
			f, _, _ := strings.Cut(strings.TrimPrefix(line, "  -"), " ")
			flags = append(flags, "--"+strings.TrimSpace(f))
		}
		return flags
	}
	return nil
}

func bashCompletion() string {
	var b strings.Builder
	b.WriteString("# bash completion for haven: source it, or put it in /etc/bash_completion.d/haven\n")
	b.WriteString("_haven() {\n  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} words=\n")
	b.WriteString("  if [ \"$COMP_CWORD\" -eq 1 ]; then\n")
	fmt.Fprintf(&b, "    COMPREPLY=($(compgen -W %q -- \"$cur\")); return\n  fi\n", strings.Join(visibleCommands(), " ")+" --version --help")
	b.WriteString("  case $cmd in\n")
	for _, name := range visibleCommands() {
		words := append(append([]string{}, subcommandWords[name]...), commandFlags(name)...)
		if name == "help" {
			words = visibleCommands()
		}
		fmt.Fprintf(&b, "    %s) words=%q ;;\n", name, strings.Join(words, " "))
	}
	b.WriteString("  esac\n")
	b.WriteString("  case $cur in -*|'') ;; *) compopt -o default 2>/dev/null ;; esac\n")
	b.WriteString("  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\ncomplete -F _haven haven\n")
	return b.String()
}

func zshCompletion() string {
	var b strings.Builder
	b.WriteString("#compdef haven\n# zsh completion for haven: put it in a directory of $fpath as _haven\n")
	b.WriteString("_haven() {\n  local -a words_\n  if (( CURRENT == 2 )); then\n")
	fmt.Fprintf(&b, "    compadd -- %s --version --help; return\n  fi\n", strings.Join(visibleCommands(), " "))
	b.WriteString("  case ${words[2]} in\n")
	for _, name := range visibleCommands() {
		words := append(append([]string{}, subcommandWords[name]...), commandFlags(name)...)
		if name == "help" {
			words = visibleCommands()
		}
		fmt.Fprintf(&b, "    %s) words_=(%s) ;;\n", name, strings.Join(words, " "))
	}
	b.WriteString("  esac\n  compadd -- $words_\n  _files\n}\ncompdef _haven haven\n")
	return b.String()
}

func fishCompletion() string {
	var b strings.Builder
	b.WriteString("# fish completion for haven: put it in ~/.config/fish/completions/haven.fish\n")
	b.WriteString("complete -c haven -f\n")
	cmds := strings.Join(visibleCommands(), " ")
	summaries := map[string]string{}
	for _, c := range commands() {
		summaries[c.name] = c.summary
	}
	for _, name := range visibleCommands() {
		fmt.Fprintf(&b, "complete -c haven -n 'not __fish_seen_subcommand_from %s' -a %s -d %s\n", cmds, name, fishQuote(summaries[name]))
		for _, w := range subcommandWords[name] {
			fmt.Fprintf(&b, "complete -c haven -n '__fish_seen_subcommand_from %s' -a %s\n", name, w)
		}
		for _, f := range commandFlags(name) {
			fmt.Fprintf(&b, "complete -c haven -n '__fish_seen_subcommand_from %s' -l %s\n", name, strings.TrimPrefix(f, "--"))
		}
	}
	return b.String()
}

func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}
