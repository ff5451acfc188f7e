package machine

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// The trace tests replay scripts from testdata/*.txt, in the manner of
// etcd-io/raft's data-driven tests. A script is a list of blocks:
//
//	# comments and blank lines between blocks are kept on rewrite
//	at 30ms campaign won epoch=7
//	----
//	<what the machine answered>
//
// The command is one line; its expected output follows the "----" line and
// ends at the next blank line. Commands:
//
//	config node=n1 fence=300ms backoff=10s   start over: zero state, clock at 0
//	       [mode=active-passive|active-active|passive-backup] [backup=true]
//	       [prio=n1:200,n2:100] [preempt=D]        preempt=D turns preemption on with delay D
//	at T tick
//	at T renewed sent=T ttl=D [new]
//	at T session lost
//	at T leader none | leader NODE epoch=N
//	at T view lost    the watch starts over (ha.Snapshot.Behind)
//	at T health ok|fail "reason"
//	at T campaign won epoch=N | campaign taken | campaign error "msg"
//	at T promote ok epoch=N | promote fail epoch=N "msg"
//	at T demote done epoch=N | demote fail epoch=N "msg"
//	at T shutdown
//	at T intents [maintenance=true] [switchover=ID from=NODE epoch=N to=NODE until=T [promote=true] ["reason"]]
//	                  the operators' intents as the driver reads them; until is
//	                  the switchover's deadline, an offset like T; a bare
//	                  "intents" withdraws them all
//	at T query        no event: what Serving and Eligible say at T
//
// T is an offset from the start of the script and never goes backwards.
// The output of a step is the state after it, observed at T, then one line
// per action, prefixed with "-> ". The state shows an "intents" line only
// when the node holds some, and a "preempt" line only when preemption is
// configured, so scripts that use neither read as before. Run with -rewrite
// to regenerate the expected outputs after a deliberate change, and review
// the diff.
var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs in testdata/*.txt")

func TestTraces(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runScript(t, file)
		})
	}
}

// block is one command of a script with its expected output.
type block struct {
	pre      []string // comments and blank lines before the command
	line     int      // line number of the command, for messages
	cmd      string
	expected string
}

func parseScript(path string) ([]block, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var (
		blocks []block
		pre    []string
		sc     = bufio.NewScanner(f)
		n      = 0
	)
	for sc.Scan() {
		n++
		line := sc.Text()
		if trimmed := strings.TrimSpace(line); trimmed == "" || strings.HasPrefix(trimmed, "#") {
			pre = append(pre, line)
			continue
		}
		b := block{pre: pre, line: n, cmd: strings.TrimSpace(line)}
		pre = nil
		if !sc.Scan() || sc.Text() != "----" {
			return nil, nil, fmt.Errorf("%s:%d: command must be followed by a ---- line", path, n)
		}
		n++
		var out []string
		for sc.Scan() {
			n++
			if sc.Text() == "" {
				break
			}
			out = append(out, sc.Text())
		}
		b.expected = strings.Join(out, "\n")
		blocks = append(blocks, b)
	}
	return blocks, pre, sc.Err()
}

func runScript(t *testing.T, path string) {
	blocks, trailer, err := parseScript(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{}
	var buf strings.Builder
	for _, b := range blocks {
		got, err := r.run(b.cmd)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", path, b.line, b.cmd, err)
		}
		if *rewrite {
			for _, p := range b.pre {
				buf.WriteString(p + "\n")
			}
			fmt.Fprintf(&buf, "%s\n----\n", b.cmd)
			if got != "" {
				buf.WriteString(got + "\n")
			}
			buf.WriteString("\n")
			continue
		}
		if got != b.expected {
			t.Errorf("%s:%d: %s\n--- expected\n%s\n--- got\n%s", path, b.line, b.cmd, b.expected, got)
		}
	}
	if *rewrite {
		out := strings.TrimRight(buf.String()+strings.Join(trailer, "\n"), "\n") + "\n"
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// t0 is the instant offsets in scripts count from.
var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

type runner struct {
	cfg Config
	s   State
	now time.Duration
	ok  bool // a config command was seen
}

func (r *runner) run(cmd string) (string, error) {
	args, err := splitArgs(cmd)
	if err != nil {
		return "", err
	}
	if args[0] == "config" {
		return "", r.config(args[1:])
	}
	if !r.ok {
		return "", errors.New("a script must start with config")
	}
	if len(args) < 3 || args[0] != "at" {
		return "", errors.New(`want "at T event ..."`)
	}
	at, err := time.ParseDuration(args[1])
	if err != nil {
		return "", err
	}
	if at < r.now {
		return "", fmt.Errorf("time goes backwards: %s after %s", at, r.now)
	}
	r.now = at
	now := t0.Add(at)
	if args[2] == "query" {
		return r.describe(now), nil
	}
	ev, err := parseEvent(args[2:])
	if err != nil {
		return "", err
	}
	if pr, ok := ev.(PromoteResult); ok && pr.Seq == 0 {
		// A result answers the latest Promote unless the script says seq=N.
		pr.Seq = r.s.PromoteSeq
		ev = pr
	}
	var acts []Action
	r.s, acts = Step(r.cfg, r.s, ev, now)
	out := r.describe(now)
	for _, a := range acts {
		out += "\n-> " + formatAction(a)
	}
	return out, nil
}

func (r *runner) config(args []string) error {
	kv, err := keyValues(args)
	if err != nil {
		return err
	}
	r.cfg = Config{Node: "n1", FenceMargin: 300 * time.Millisecond, PromoteBackoff: 10 * time.Second}
	for k, v := range kv {
		switch k {
		case "node":
			r.cfg.Node = v
		case "fence":
			r.cfg.FenceMargin, err = time.ParseDuration(v)
		case "backoff":
			r.cfg.PromoteBackoff, err = time.ParseDuration(v)
		case "mode":
			switch m := ha.Mode(v); m {
			case ha.ModeActivePassive, ha.ModeActiveActive, ha.ModePassiveBackup:
				r.cfg.Mode = m
			default:
				err = fmt.Errorf("unknown mode %q", v)
			}
		case "backup":
			r.cfg.Backup, err = strconv.ParseBool(v)
		case "prio":
			r.cfg.Priorities, err = parsePriorities(v)
		case "preempt":
			r.cfg.Preempt = true
			r.cfg.PreemptDelay, err = time.ParseDuration(v)
		default:
			return fmt.Errorf("unknown config key %q", k)
		}
		if err != nil {
			return err
		}
	}
	r.s, r.now, r.ok = State{}, 0, true
	return nil
}

// parsePriorities reads "n1:200,n2:100".
func parsePriorities(v string) (map[string]int, error) {
	prio := map[string]int{}
	for _, p := range strings.Split(v, ",") {
		node, n, ok := strings.Cut(p, ":")
		if !ok {
			return nil, fmt.Errorf("prio: want node:n, got %q", p)
		}
		i, err := strconv.Atoi(n)
		if err != nil {
			return nil, fmt.Errorf("prio %s: %w", node, err)
		}
		prio[node] = i
	}
	return prio, nil
}

// parseIntents reads the arguments of an intents event.
func parseIntents(kv map[string]string, reason string) (IntentsSeen, error) {
	var ev IntentsSeen
	for k, v := range kv {
		var err error
		switch k {
		case "maintenance":
			ev.Maintenance, err = strconv.ParseBool(v)
		case "switchover":
			ev.Switchover.ID = v
		case "from":
			ev.Switchover.From = v
		case "to":
			ev.Switchover.To = v
		case "epoch":
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			ev.Switchover.Epoch = ha.Epoch(n)
		case "until":
			var d time.Duration
			d, err = time.ParseDuration(v)
			ev.SwitchoverUntil = t0.Add(d)
			ev.Switchover.Deadline = ev.SwitchoverUntil
		case "promote":
			ev.Switchover.Promote, err = strconv.ParseBool(v)
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			return IntentsSeen{}, fmt.Errorf("intents %s=%s: %w", k, v, err)
		}
	}
	ev.Switchover.Reason = reason
	if ev.Switchover.ID == "" && (ev.Switchover != ha.Switchover{} || !ev.SwitchoverUntil.IsZero()) {
		return IntentsSeen{}, errors.New("intents: switchover fields without switchover=ID")
	}
	if ev.Switchover.ID != "" && (ev.Switchover.To == "" || ev.SwitchoverUntil.IsZero()) {
		return IntentsSeen{}, errors.New("intents: a switchover needs to= and until=")
	}
	return ev, nil
}

func parseEvent(args []string) (Event, error) {
	name, rest := args[0], args[1:]
	var word, msg string // the first bare word and quoted string after the name
	var kvs []string
	for _, a := range rest {
		switch {
		case strings.HasPrefix(a, `"`):
			m, err := strconv.Unquote(a)
			if err != nil {
				return nil, err
			}
			msg = m
		case strings.Contains(a, "="):
			kvs = append(kvs, a)
		case word == "" && msg == "":
			word = a
		default:
			return nil, fmt.Errorf("unexpected argument %q", a)
		}
	}
	kv, err := keyValues(kvs)
	if err != nil {
		return nil, err
	}
	epoch := func() (ha.Epoch, error) {
		n, err := strconv.ParseInt(kv["epoch"], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("epoch: %w", err)
		}
		return ha.Epoch(n), nil
	}
	dur := func(k string) (time.Duration, error) {
		d, err := time.ParseDuration(kv[k])
		if err != nil {
			return 0, fmt.Errorf("%s: %w", k, err)
		}
		return d, nil
	}
	errOf := func() error {
		if msg == "" {
			msg = "failed"
		}
		return errors.New(msg)
	}
	switch name + " " + word {
	case "tick ":
		return Tick{}, nil
	case "shutdown ":
		return Shutdown{}, nil
	case "renewed ", "renewed new":
		sent, err := dur("sent")
		if err != nil {
			return nil, err
		}
		ttl, err := dur("ttl")
		if err != nil {
			return nil, err
		}
		return SessionRenewed{SentAt: t0.Add(sent), TTL: ttl, New: word == "new"}, nil
	case "session lost":
		return SessionLost{Err: ha.ErrSessionLost}, nil
	case "intents ":
		return parseIntents(kv, msg)
	case "leader none":
		return LeaderSeen{}, nil
	case "view lost":
		return ViewLost{}, nil
	case "health ok", "health fail":
		return HealthChanged{Healthy: word == "ok", Reason: msg}, nil
	case "campaign won":
		e, err := epoch()
		return CampaignResult{Epoch: e}, err
	case "campaign taken":
		return CampaignResult{Err: ha.ErrTaken}, nil
	case "campaign error":
		return CampaignResult{Err: errOf()}, nil
	case "promote ok", "promote fail", "demote done", "demote fail":
		e, err := epoch()
		if err != nil {
			return nil, err
		}
		var res error
		if word == "fail" {
			res = errOf()
		}
		if name == "promote" {
			var seq uint64
			if v, ok := kv["seq"]; ok {
				if _, err := fmt.Sscan(v, &seq); err != nil {
					return nil, fmt.Errorf("bad seq %q", v)
				}
			}
			return PromoteResult{Epoch: e, Seq: seq, Err: res}, nil
		}
		return DemoteResult{Epoch: e, Err: res}, nil
	}
	if name == "leader" && word != "" {
		e, err := epoch()
		return LeaderSeen{Leader: ha.Leader{Node: word, Epoch: e}}, err
	}
	return nil, fmt.Errorf("unknown event %q", strings.Join(args, " "))
}

// describe renders what an operator would want to see of the state at now.
func (r *runner) describe(now time.Time) string {
	s, cfg := r.s, r.cfg
	var b strings.Builder
	role := s.Role
	if role == "" {
		role = "(zero)"
	}
	fmt.Fprintf(&b, "%s epoch=%d serving=%t", role, s.Epoch, s.Serving(cfg, now))
	if ok, why := s.Eligible(cfg, now); ok {
		b.WriteString(" eligible=true")
	} else {
		fmt.Fprintf(&b, " eligible=false (%s)", why)
	}
	fmt.Fprintf(&b, " next=%s\n", offset(s.NextDeadline(cfg)))
	fmt.Fprintf(&b, "  since=%s reason=%q\n", offset(s.Since), s.Reason)
	session := "none"
	if s.SessionOK {
		session = "ok"
	}
	leader := "?"
	switch {
	case s.LeaderKnown && s.Leader.None():
		leader = "vacant"
	case s.LeaderKnown:
		leader = fmt.Sprintf("%s@%d", s.Leader.Node, s.Leader.Epoch)
	}
	health := "fail"
	if s.Healthy {
		health = "ok"
	}
	fmt.Fprintf(&b, "  session=%s valid-until=%s leader=%s health=%s", session, offset(s.ValidUntil), leader, health)
	if !s.BackoffUntil.IsZero() {
		fmt.Fprintf(&b, " backoff-until=%s", offset(s.BackoffUntil))
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{s.Acquiring, "acquiring"}, {s.Stopping, "stopping"}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	if s.Failovers != 0 {
		fmt.Fprintf(&b, " failovers=%d", s.Failovers)
	}
	if s.Maintenance || s.Switchover.ID != "" {
		b.WriteString("\n  intents")
		if s.Maintenance {
			b.WriteString(" maintenance")
		}
		if sw := s.Switchover; sw.ID != "" {
			state := "expired"
			if s.switchoverPending(now) {
				state = "pending"
			}
			from := "none"
			if sw.From != "" {
				from = fmt.Sprintf("%s@%d", sw.From, sw.Epoch)
			}
			fmt.Fprintf(&b, " switchover=%s %s->%s until=%s (%s)", sw.ID, from, sw.To, offset(s.SwitchoverUntil), state)
			if sw.Promote {
				b.WriteString(" promote")
			}
		}
	}
	if cfg.Preempt {
		fmt.Fprintf(&b, "\n  preempt eligible-since=%s asked=%s", offset(s.EligibleSince), offset(s.PreemptAsked))
	}
	return b.String()
}

func formatAction(a Action) string {
	switch a := a.(type) {
	case Campaign:
		if a.Reclaim != 0 {
			return fmt.Sprintf("Campaign reclaim=%d", a.Reclaim)
		}
		return "Campaign"
	case Promote:
		return fmt.Sprintf("Promote epoch=%d", a.Epoch)
	case Demote:
		return fmt.Sprintf("Demote epoch=%d fenced=%t reason=%q", a.Epoch, a.Fenced, a.Reason)
	case Resign:
		return fmt.Sprintf("Resign epoch=%d", a.Epoch)
	case Publish:
		return "Publish"
	case NewSession:
		return "NewSession"
	case RequestSwitchover:
		return fmt.Sprintf("RequestSwitchover reason=%q", a.Reason)
	case ClearSwitchover:
		return "ClearSwitchover id=" + a.ID
	}
	return fmt.Sprintf("%#v", a)
}

// formatEvent renders an event in script syntax, the inverse of parseEvent.
func formatEvent(ev Event) string {
	result := func(ok, fail string, err error) string {
		if err == nil {
			return ok
		}
		return fmt.Sprintf("%s %q", fail, err.Error())
	}
	switch ev := ev.(type) {
	case Tick:
		return "tick"
	case Shutdown:
		return "shutdown"
	case SessionRenewed:
		new := ""
		if ev.New {
			new = " new"
		}
		return fmt.Sprintf("renewed%s sent=%s ttl=%s", new, offset(ev.SentAt), ev.TTL)
	case SessionLost:
		return "session lost"
	case LeaderSeen:
		if ev.Leader.None() {
			return "leader none"
		}
		return fmt.Sprintf("leader %s epoch=%d", ev.Leader.Node, ev.Leader.Epoch)
	case ViewLost:
		return "view lost"
	case HealthChanged:
		return fmt.Sprintf("health %s %q", map[bool]string{true: "ok", false: "fail"}[ev.Healthy], ev.Reason)
	case CampaignResult:
		switch {
		case ev.Err == nil:
			return fmt.Sprintf("campaign won epoch=%d", ev.Epoch)
		case errors.Is(ev.Err, ha.ErrTaken):
			return "campaign taken"
		}
		return fmt.Sprintf("campaign error %q", ev.Err.Error())
	case PromoteResult:
		return fmt.Sprintf("promote %s", result(fmt.Sprintf("ok epoch=%d", ev.Epoch), fmt.Sprintf("fail epoch=%d", ev.Epoch), ev.Err))
	case DemoteResult:
		return fmt.Sprintf("demote %s", result(fmt.Sprintf("done epoch=%d", ev.Epoch), fmt.Sprintf("fail epoch=%d", ev.Epoch), ev.Err))
	case IntentsSeen:
		out := "intents"
		if ev.Maintenance {
			out += " maintenance=true"
		}
		if sw := ev.Switchover; sw.ID != "" {
			out += fmt.Sprintf(" switchover=%s", sw.ID)
			if sw.From != "" {
				out += " from=" + sw.From
			}
			if sw.Epoch != 0 {
				out += fmt.Sprintf(" epoch=%d", sw.Epoch)
			}
			out += fmt.Sprintf(" to=%s until=%s", sw.To, offset(ev.SwitchoverUntil))
			if sw.Promote {
				out += " promote=true"
			}
			if sw.Reason != "" {
				out += fmt.Sprintf(" %q", sw.Reason)
			}
		}
		return out
	}
	return fmt.Sprintf("%#v", ev)
}

// offset renders a time as its distance from t0, or "-" for the zero time.
func offset(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(t0).String()
}

// splitArgs splits a command on spaces, keeping double-quoted strings
// (with their quotes) as one argument.
func splitArgs(s string) ([]string, error) {
	var args []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("bad quoted string in %q: %w", s, err)
			}
			args, s = append(args, q), s[len(q):]
			continue
		}
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			i = len(s)
		}
		args, s = append(args, s[:i]), s[i:]
	}
	if len(args) == 0 {
		return nil, errors.New("empty command")
	}
	return args, nil
}

func keyValues(args []string) (map[string]string, error) {
	kv := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("want key=value, got %q", a)
		}
		kv[k] = v
	}
	return kv, nil
}
