package node

import (
	"net/http"
	"slices"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/web"
)

// httpHandler is everything agent a serves on its API address: the API,
// GET /v1/logs and the dashboard under /ui/ (/ redirects there). The
// returned func ends the dashboard's live streams, for a prompt shutdown.
func httpHandler(a *agent.Agent, o api.Options) (http.Handler, func()) {
	dash := web.New(web.Options{
		Config:   a.Config(),
		Node:     a.Node().Name,
		Source:   a,
		Operator: a,
		Logs:     a,
		Aliases:  a,
		Audit:    o.Audit,
		Log:      a.Logger().With("part", "dashboard"),
		Client:   a.PeerClient().WithWho(""),
	})
	mux := http.NewServeMux()
	mux.Handle("/v1/logs", api.LogsHandler(a, o))
	if f := a.Folders(); f != nil {
		mux.Handle("/v1/folders/", api.FoldersHandler(f, agent.FolderNodes(a.Config()), o))
	}
	mux.Handle("/ui/", dash)
	if !slices.Contains(o.RedirectPaths, "/") {
		mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusSeeOther))
	}
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusSeeOther))
	mux.Handle("/", api.Handler(a, a, o))
	return mux, dash.Close
}

// apiOptions is what protects agent a's API under cfg: the token, whether
// reads are open, the audit log, and the paths that redirect users to the
// active node (or to redirect.to).
func apiOptions(cfg *config.Config, a *agent.Agent) api.Options {
	return api.Options{Token: cfg.APIAuth.Token, StatusOpen: cfg.APIAuth.StatusOpen, Audit: a.Audit,
		RedirectPaths: cfg.Redirect.Paths, RedirectTarget: a.RedirectTarget}
}
