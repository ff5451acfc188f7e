package config

import (
	"log/slog"
	"time"

	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/service"
	"github.com/haven-ha/haven/internal/service/contain"
)

// Config is a whole haven configuration file, after presets are applied and
// validation has passed. The same file is used on every node; Node picks one.
type Config struct {
	Path    string  // file it was read from
	Cluster string  // name; store keys live under /haven/<cluster>/
	Mode    ha.Mode // active-passive (default), active-active or passive-backup
	DataDir string  // node data lives in DataDir/<node name>
	Timing  Timing
	Store   Store // coordination store; zero value: embedded etcd
	Nodes   []Node
	Service Service
	Hooks   Hooks
	Checks  []Check
	Proxy   Proxy // zero value: no proxy
	Preempt Preempt
	APIAuth APIAuth
	// OutagePolicy is what the active does when it cannot reach the store:
	// "demote" (default: stop when the lease runs out) or "failsafe" (keep
	// serving while every other node confirms over the API that it is not
	// active).
	OutagePolicy OutagePolicy
	Redirect     Redirect
	Dashboard    Dashboard // zero value: no dashboard
	Drill        Drill     // may `haven drill --config` inject faults here
	Log          Log
	// Warnings are settings that are valid but likely wrong (config check
	// prints them; the agent logs them).
	Warnings []Problem
	// AgentErrors stop `haven agent` and fail `config check` but not
	// `haven proxy`, which may read the file for its own settings: a
	// proxy.listen that agents on one host would share, say.
	AgentErrors []Problem
	VIP         VIP        // zero value: no virtual IP
	Sessions    Sessions   // zero value: no session store
	TLS         ClusterTLS // mutual TLS on every listener (`tls:`)
	Insecure    bool       // `insecure: true`: no TLS, on purpose
	Sync        Sync       // replicated folders (`sync:`); zero value: none
	// LockDelay (`lock_delay:`): "auto" (default) makes a node that wins
	// the leader key after it went without a record of resign or expiry
	// wait lease_ttl − fence_margin before it acts, on stores that can end a
	// live lease early (etcd); "off" never waits, unsafe when an etcd raft
	// leader freezes (package lockdelay, docs/safety.md).
	LockDelay LockDelay
}

// LockDelay is the lock_delay setting.
type LockDelay string

// Lock-delay settings.
const (
	LockDelayAuto LockDelay = "auto" // wait when the store can end a live lease early (etcd)
	LockDelayOff  LockDelay = "off"  // never wait: unsafe under etcd-leader freezes
)

// Timing holds every duration that failover and fencing depend on.
type Timing struct {
	Preset        string        // "lan" or "wan"; "lan (custom)" etc. when timings: overrides any field
	LeaseTTL      time.Duration // session lease in the store; whole seconds (etcd granularity)
	RenewInterval time.Duration // how often the agent renews its lease
	RenewTimeout  time.Duration // how long one renewal may take
	FenceMargin   time.Duration // the active stops acting this long before its lease can expire
	EtcdHeartbeat time.Duration // embedded etcd raft heartbeat
	EtcdElection  time.Duration // embedded etcd raft election timeout
}

// Node is one member of the cluster.
type Node struct {
	Name     string
	Site     string            // where the node is (free text such as dc1); shown in status and on the dashboard
	API      string            // host:port of the agent HTTP API
	Peer     string            // host:port of the embedded etcd peer listener
	Client   string            // host:port of the embedded etcd client listener
	Backend  string            // host:port where the node's service takes client traffic (for the proxy)
	Witness  bool              // an etcd member only: votes, never runs a service
	Backup   bool              // passive-backup mode: promoted only by an operator
	Priority int               // higher is preferred when preemption is on; default 100
	Env      map[string]string // per-node variables: exported to the service, hooks and checks, and usable as ${NAME} in them
	Line     int               // line in the file, for messages

	VIPInterface string // overrides vip.interface on this node
}

// Service describes the local service an agent supervises. Command empty
// means the service is managed outside haven, through hooks only.
type Service struct {
	Command      []string          // argv; ${VAR} expanded from node env
	Env          map[string]string // extra environment
	Dir          string            // working directory
	Standby      Standby
	StopSignal   string        // e.g. "SIGTERM"
	StopGrace    time.Duration // wait this long after StopSignal before SIGKILL
	Restart      service.RestartPolicy
	RestartDelay time.Duration // first delay before a restart; doubles up to 10s, reset after 10s of running
	Containment  contain.Mode  // "" or auto (cgroup v2 where possible, else process group), cgroup, process-group
}

// Hook is a command run on a role change: service's own Hook.
type Hook = service.Hook

// Standby says whether the service runs on standbys (service.standby).
type Standby string

// Standby modes.
const (
	StandbyHot  Standby = "hot"  // the service runs on standbys too
	StandbyCold Standby = "cold" // the service starts on promotion and stops on demotion
)

// OutagePolicy is what the active does when it cannot reach the store
// (outage_policy).
type OutagePolicy string

// Outage policies.
const (
	OutageDemote   OutagePolicy = "demote"   // stop acting when the lease runs out
	OutageFailsafe OutagePolicy = "failsafe" // keep serving while every other node confirms it is not active
)

// Options translates the service section into what service.New takes.
func (s Service) Options() service.Options {
	return service.Options{Command: s.Command, Env: s.Env, Dir: s.Dir, StopSignal: s.StopSignal,
		StopGrace: s.StopGrace, Restart: s.Restart, RestartDelay: s.RestartDelay}
}

// Hooks run on role changes, with HAVEN_ROLE, HAVEN_EPOCH, HAVEN_NODE set.
type Hooks struct {
	OnPromote      Hook
	OnDemote       Hook
	PromoteBackoff time.Duration // ineligible this long after a failed on_promote
}

// Check is one health check of the local service: check's own Options,
// which config fills from the checks: section.
type Check = check.Options

// HTTPCheck passes when GET URL answers ExpectStatus.
type HTTPCheck = check.HTTP

// TCPCheck passes when Address accepts a connection.
type TCPCheck = check.TCP

// ExecCheck passes when Command exits 0.
type ExecCheck = check.Exec

// DiskCheck passes while the file system holding Path has enough free
// space (check.Disk).
type DiskCheck = check.Disk

// Log configures the agent's log.
type Log struct {
	Level  LogLevel
	Format LogFormat
}

// LogLevel is log.level.
type LogLevel string

// Log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// Slog is the level for log/slog.
func (l LogLevel) Slog() slog.Level {
	switch l {
	case LogDebug:
		return slog.LevelDebug
	case LogWarn:
		return slog.LevelWarn
	case LogError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// LogFormat is log.format.
type LogFormat string

// Log formats.
const (
	LogText LogFormat = "text" // slog's key=value lines
	LogJSON LogFormat = "json" // one JSON object a line
)

// NodeByName returns the node called name.
func (c *Config) NodeByName(name string) (Node, bool) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Voters returns the nodes that are etcd members (all of them, witnesses included).
func (c *Config) Voters() []Node { return c.Nodes }
