package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMECommandsTable: README's Commands section names every command
// a user can run and every subcommand word of its synopses, so the table
// cannot fall behind the command table.
func TestREADMECommandsTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Commands\n")
	if !ok {
		t.Fatal("README.md has no ## Commands section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	word := regexp.MustCompile(`^[a-z][a-z-]*$`)
	for _, c := range commands() {
		if c.hidden {
			continue
		}
		if !strings.Contains(sec, "haven "+c.name) && !strings.Contains(sec, "`"+c.name+"`") {
			t.Errorf("README's Commands table does not name `haven %s`", c.name)
		}
		for _, u := range usageLines[c.name] {
			f := strings.Fields(u)
			if len(f) < 3 || !word.MatchString(f[2]) {
				continue
			}
			if sub := c.name + " " + f[2]; !strings.Contains(sec, sub) {
				t.Errorf("README's Commands table does not name `haven %s` (usage: %s)", sub, u)
			}
		}
	}
}
