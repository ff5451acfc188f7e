package cli

import (
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/config"
)

// spawnTries is how many processes config check starts to measure what a
// process start costs on this machine now.
const spawnTries = 5

// printTraps prints the settings of cfg that stop an agent (as errors) and
// those that are likely wrong (as warnings), and reports whether there was
// an error. Warnings about exec checks come with a measure of what a
// process start costs here and now.
func printTraps(cfg *config.Config, out, errw io.Writer) bool {
	for _, p := range cfg.AgentErrors {
		fmt.Fprintf(errw, "haven: %s\n", formatProblem(cfg.Path, p))
	}
	exec := false
	for _, p := range cfg.Warnings {
		fmt.Fprintf(out, "warning: %s\n", formatProblem(cfg.Path, p))
		exec = exec || strings.Contains(p.Msg, "exec check")
	}
	if exec {
		if slowest, median, err := spawnCost(); err == nil {
			fmt.Fprintf(out, "warning: measured here, now: starting a process (/bin/true) took %s (median of %d), %s at worst; under load it takes far longer\n", median.Round(10*time.Microsecond), spawnTries, slowest.Round(10*time.Microsecond))
		}
	}
	return len(cfg.AgentErrors) > 0
}

func formatProblem(file string, p config.Problem) string {
	e := &config.Error{File: file, Problems: []config.Problem{p}}
	return e.Error()
}

// spawnCost starts /bin/true a few times and returns the slowest and the
// median wall time of a start and wait.
func spawnCost() (slowest, median time.Duration, err error) {
	var d []time.Duration
	for range spawnTries {
		start := time.Now()
		if err := exec.Command("/bin/true").Run(); err != nil {
			return 0, 0, err
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	return d[len(d)-1], d[len(d)/2], nil
}
