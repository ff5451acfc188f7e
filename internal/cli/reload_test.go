package cli

import (
	"reflect"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/config"
)

func TestRestartNeeded(t *testing.T) {
	base := &config.Config{Path: "/etc/haven/a.yaml", Cluster: "c", Log: config.Log{Level: "info", Format: "text"}}
	same := *base
	same.Path, same.Log.Level = "/elsewhere.yaml", "debug"
	if got := restartNeeded(base, &same); len(got) != 0 {
		t.Errorf("only the path and log.level differ: %v, want nothing", got)
	}
	// The same settings further down the file (a comment added above them).
	withNodes := *base
	withNodes.Nodes = []config.Node{{Name: "n1", Line: 5}}
	withNodes.Store.Line = 9
	moved := withNodes
	moved.Nodes = []config.Node{{Name: "n1", Line: 6}}
	moved.Store.Line = 10
	if got := restartNeeded(&withNodes, &moved); len(got) != 0 {
		t.Errorf("only line numbers differ: %v, want nothing", got)
	}
	renamed := moved
	renamed.Nodes = []config.Node{{Name: "n9", Line: 6}}
	if got, want := restartNeeded(&withNodes, &renamed), []string{"Nodes"}; !reflect.DeepEqual(got, want) {
		t.Errorf("a renamed node: %v, want %v", got, want)
	}
	other := same
	other.Timing.LeaseTTL = 4 * time.Second
	other.Log.Format = "json"
	if got, want := restartNeeded(base, &other), []string{"Timing", "Log"}; !reflect.DeepEqual(got, want) {
		t.Errorf("restartNeeded = %v, want %v", got, want)
	}
}
