package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/redundancy"
)

// TestEveryCommandHelp: every command answers -h, --help and `haven help
// CMD` with its synopsis (its positionals), exits 0, and has no side
// effect; an unknown flag exits 2 with the synopsis.
func TestEveryCommandHelp(t *testing.T) {
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errw bytes.Buffer
				if code := Main(args, &out, &errw); code != exitOK {
					t.Fatalf("exit %d, want 0; stderr: %s", code, errw.String())
				}
				if !strings.Contains(out.String(), "Usage:\n  haven "+c.name) {
					t.Fatalf("no synopsis of %s on stdout:\n%s", c.name, out.String())
				}
				if want := usageLines[c.name]; len(want) == 0 {
					t.Fatalf("%s has no usageLines entry", c.name)
				}
			})
		}
		if c.name == "help" || c.name == "completion" {
			continue
		}
		t.Run(c.name+" --no-such-flag", func(t *testing.T) {
			var out, errw bytes.Buffer
			args := append(append([]string{c.name}, helpArgs[c.name]...), "--no-such-flag")
			if code := Main(args, &out, &errw); code != exitUsage {
				t.Fatalf("exit %d, want 2", code)
			}
			if !strings.Contains(errw.String(), "Usage:") {
				t.Fatalf("no usage on a bad flag:\n%s", errw.String())
			}
		})
	}
}

func TestMainExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, exitUsage, "Commands:"},
		{[]string{"--help"}, exitOK, "hash-password"},
		{[]string{"help"}, exitOK, "Commands:"},
		{[]string{"help", "nope"}, exitUsage, ""},
		{[]string{"nope"}, exitUsage, ""},
		{[]string{"--version"}, exitOK, "haven "},
		{[]string{"version"}, exitOK, "haven "},
		{[]string{"version", "--json"}, exitOK, `"version"`},
		{[]string{"completion"}, exitUsage, ""},
		{[]string{"completion", "tcsh"}, exitUsage, ""},
		{[]string{"status", "--api", "http://x", "--active-pid", "db"}, exitUsage, ""},
		{[]string{"config", "check", "--json", "/nonexistent.yaml"}, exitUsage, `"valid": false`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errw bytes.Buffer
			if code := Main(tc.args, &out, &errw); code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errw.String())
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Fatalf("stdout lacks %q:\n%s", tc.out, out.String())
			}
		})
	}
}

// TestCompletionScripts: each script names every command and some flags;
// bash's parses with bash -n.
func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		var out, errw bytes.Buffer
		if code := Main([]string{"completion", sh}, &out, &errw); code != exitOK {
			t.Fatalf("completion %s: exit %d: %s", sh, code, errw.String())
		}
		for _, want := range append(visibleCommands(), "config", "hash-password", "watch") {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s completion lacks %q", sh, want)
			}
		}
		if sh == "bash" {
			cmd := exec.Command("bash", "-n")
			cmd.Stdin = &out
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("bash -n: %v\n%s", err, b)
			}
		}
	}
}

// TestStatusExitCodes: status exits 0 when one node is active and every
// other is an eligible standby, 1 when degraded or no agent answers, 3
// with no active node.
func TestStatusExitCodes(t *testing.T) {
	active := api.NodeView{Name: "n1", Role: ha.RoleActive, Healthy: true, Epoch: 7, ServicePID: 41, AgentPID: 40}
	standby := api.NodeView{Name: "n2", Role: ha.RoleStandby, Healthy: true, Eligible: true}
	down := api.NodeView{Name: "n2", Role: ha.RoleDown}
	lead := ha.Leader{Node: "n1", Epoch: 7}
	for _, tc := range []struct {
		name string
		st   *api.Status
		args []string
		code int
		out  string
	}{
		{"intact", &api.Status{Leader: lead, Nodes: []api.NodeView{active, standby}}, nil, exitOK, "redundancy: ok"},
		{"intact json", &api.Status{Leader: lead, Nodes: []api.NodeView{active, standby}}, []string{"--json"}, exitOK, `"state": "ok"`},
		{"degraded", &api.Status{Leader: lead, Nodes: []api.NodeView{active, down}}, nil, exitDegraded, "n2 cannot take over: it is down"},
		{"no active", &api.Status{Nodes: []api.NodeView{standby, {Name: "n1", Role: ha.RoleDown}}}, nil, exitNoActive, "no-active"},
		{"active pid", &api.Status{Leader: lead, Nodes: []api.NodeView{active, standby}}, []string{"--active-pid", "service"}, exitOK, "41\n"},
		{"active agent pid", &api.Status{Leader: lead, Nodes: []api.NodeView{active, down}}, []string{"--active-pid", "agent"}, exitOK, "40\n"},
		{"no active pid", &api.Status{Nodes: []api.NodeView{standby}}, []string{"--active-pid", "service"}, exitNoActive, ""},
		{"agent says degraded", &api.Status{Leader: lead, Nodes: []api.NodeView{active, standby},
			Redundancy: &redundancyDegraded}, nil, exitDegraded, "quorum"},
		{"no agent answers", nil, nil, exitFailure, ""},
		{"mixed versions", &api.Status{Leader: lead, Nodes: []api.NodeView{{Name: "n1", Role: ha.RoleActive, Version: "1.2.0"}, {Name: "n2", Role: ha.RoleStandby, Eligible: true, Version: "1.3.0"}}},
			nil, exitOK, "versions differ: 1.2.0 on n1; 1.3.0 on n2;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := "http://127.0.0.1:1"
			if tc.st != nil {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_ = json.NewEncoder(w).Encode(tc.st)
				}))
				defer srv.Close()
				url = srv.URL
			}
			var out, errw bytes.Buffer
			code := Main(append([]string{"status", "--api", url}, tc.args...), &out, &errw)
			if code != tc.code || !strings.Contains(out.String(), tc.out) {
				t.Fatalf("exit %d, want %d; want %q in stdout:\n%s\nstderr: %s", code, tc.code, tc.out, out.String(), errw.String())
			}
		})
	}
}

var redundancyDegraded = redundancy.Report{State: redundancy.Degraded, Reasons: []string{"store quorum at its minimum"}}

// TestDemoRoleLines: the demo prints each role event of the history once,
// nothing from before it started and nothing that is not a role change.
func TestDemoRoleLines(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := []ha.Event{
		{Time: t0.Add(-time.Second), Node: "n1", Kind: "role", From: "promoting", To: "active", Epoch: 3},
		{Time: t0.Add(time.Second), Node: "n1", Kind: "health", To: "unhealthy"},
		{Time: t0.Add(2 * time.Second), Node: "n2", Kind: "role", From: "standby", To: "promoting", Epoch: 9},
		{Time: t0.Add(2 * time.Second), Node: "n2", Kind: "role", From: "promoting", To: "active", Epoch: 9, Reason: "n1 lost its lease"},
	}
	seen := map[string]bool{}
	lines := newRoleLines(evs, t0, seen)
	if len(lines) != 2 || !strings.Contains(lines[1], "n2  promoting -> active    epoch 9  (n1 lost its lease)") {
		t.Fatalf("lines = %q", lines)
	}
	if again := newRoleLines(evs, t0, seen); len(again) != 0 {
		t.Fatalf("printed again: %q", again)
	}
	var out bytes.Buffer
	if self := demoSelf(&out, "/tmp/go-build123/b001/exe/haven"); self != "./haven" || !strings.Contains(out.String(), "go build -o haven ./cmd/haven") {
		t.Fatalf("go run hint: %q %q", self, out.String())
	}
	if self := demoSelf(&out, "/usr/bin/haven"); self != "/usr/bin/haven" {
		t.Fatalf("demoSelf = %q", self)
	}
}

// TestStatusWatch: --watch redraws the status until stopped and returns
// the last look's exit code.
func TestStatusWatch(t *testing.T) {
	st := api.Status{Leader: ha.Leader{Node: "n1", Epoch: 3}, Nodes: []api.NodeView{{Name: "n1", Role: ha.RoleActive}, {Name: "n2", Role: ha.RoleDown}}}
	looked := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(st)
		looked <- struct{}{}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errw bytes.Buffer
	done := make(chan int)
	go func() {
		done <- watchStatus(ctx, &out, &errw, api.NewClient(api.ClientOptions{}), []string{srv.URL}, false, 100*time.Millisecond)
	}()
	for i := 0; i < 2; i++ {
		select {
		case <-looked:
		case <-time.After(30 * time.Second):
			t.Fatal("watch did not look twice")
		}
	}
	cancel()
	if code := <-done; code != exitDegraded {
		t.Fatalf("watch exit %d, want 1 (n2 down)", code)
	}
	if n := strings.Count(out.String(), "\033[H\033[2J"); n < 2 || !strings.Contains(out.String(), "redundancy: degraded") {
		t.Fatalf("watch drew %d times:\n%q", n, out.String())
	}
}
