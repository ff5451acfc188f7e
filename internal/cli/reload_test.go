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
	other := same
	other.Timing.LeaseTTL = 4 * time.Second
	other.Log.Format = "json"
	if got, want := restartNeeded(base, &other), []string{"Timing", "Log"}; !reflect.DeepEqual(got, want) {
		t.Errorf("restartNeeded = %v, want %v", got, want)
	}
}
