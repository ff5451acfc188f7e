package agent

import (
	"time"

	"log/slog"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/folders"
	"github.com/haven-ha/haven/internal/ha"
)

// NewFolders builds node's replicated folders (`sync:`) beside agent a:
// the receiver of each folder, and its sender while a is active. Nil when
// the config replicates none. Run it with Run; its API goes under
// /v1/folders/ (httpHandler).
func NewFolders(cfg *config.Config, node config.Node, a *Agent, log *slog.Logger) (*folders.Service, error) {
	if !cfg.Sync.Enabled() {
		return nil, nil
	}
	var peers []folders.Peer
	for _, n := range cfg.Nodes {
		if n.Name != node.Name && !n.Witness && n.API != "" {
			peers = append(peers, folders.Peer{Name: n.Name, Addr: n.API})
		}
	}
	svc, err := folders.New(folders.Options{
		Node:      node.Name,
		Folders:   syncFolders(cfg, node),
		Peers:     peers,
		MaxLag:    cfg.Sync.MaxLag,
		Bandwidth: cfg.Sync.Bandwidth,
		Client:    a.peerClient().WithTimeout(cfg.Sync.MaxLag + 30*time.Second),
		Clock:     a.clk,
		Log:       log.With("part", "folders"),
		Role: func() (bool, ha.Epoch) {
			st := a.State()
			return st.Role == ha.RoleActive, st.Epoch
		},
		RoleChanged: a.RoleChanged,
		Leader:      func() ha.Leader { return a.Snapshot().Leader },
		Event:       a.record,
	})
	if err != nil {
		return nil, err
	}
	a.metrics.reg.MustRegister(svc.Collectors()...)
	a.folders = svc
	return svc, nil
}

// FolderNodes are the names whose certificates may write folders: the
// cluster's service nodes.
func FolderNodes(cfg *config.Config) []string {
	var names []string
	for _, n := range cfg.Nodes {
		if !n.Witness {
			names = append(names, n.Name)
		}
	}
	return names
}

// Folders is the agent's replicated folders service, nil without sync:.
func (a *Agent) Folders() *folders.Service { return a.folders }

// syncFolders are node's replicated folders as package folders takes them.
func syncFolders(cfg *config.Config, n config.Node) []folders.Folder {
	var out []folders.Folder
	for _, f := range cfg.Sync.Folders {
		out = append(out, folders.Folder{Name: f.Name, Path: cfg.FolderPath(f, n), Include: f.Include, Exclude: f.Exclude, Mirror: f.Delete == "mirror", Quiet: f.Quiet})
	}
	return out
}
