package agent

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/service/contain"
)

// openGroup opens the group the node's service runs in: a cgroup v2 group
// beside the agent's where the kernel allows, else a process group. It
// first kills what an earlier run of this node left (an agent killed with
// SIGKILL whose guard was killed too, say).
func openGroup(cfg *config.Config, node config.Node, log *slog.Logger) (*contain.Group, error) {
	dir, err := filepath.Abs(filepath.Join(cfg.DataDir, node.Name))
	if err != nil {
		return nil, fmt.Errorf("service containment: %w", err)
	}
	g, err := contain.Open(contain.Options{
		Key:      dir,
		Name:     cfg.Cluster + "-" + node.Name,
		StateDir: dir,
		Mode:     cfg.Service.Containment,
		Log:      log.With("part", "contain"),
	})
	if err != nil {
		return nil, fmt.Errorf("service containment: %w", err)
	}
	return g, nil
}

// containmentMetric is haven_service_containment{kind}: 1 for the
// containment in force.
func containmentMetric(a *Agent) prometheus.Collector {
	kind := "none"
	if a.svc != nil {
		kind = string(a.svc.ContainmentKind())
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "haven_service_containment", Help: "1, labelled with how the service's processes are contained: cgroup, process-group, or none (no supervised service).",
		ConstLabels: prometheus.Labels{"kind": kind},
	}, func() float64 { return 1 })
}
