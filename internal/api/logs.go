package api

import (
	"net/http"
	"strconv"
)

// LogSource gives access to the node's own agent log, for GET /v1/logs.
type LogSource interface {
	// Logs returns the newest lines of the log, or with lines <= 0 all of
	// it that is kept (bounded by the rotation).
	Logs(lines int) ([]byte, error)
}

// LogsHandler serves GET /v1/logs?lines=N: the node's agent log as text.
// Logs say more about a node than its status does, so the bearer token is
// always required, whatever api.status_open says.
func LogsHandler(src LogSource, o Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on /v1/logs; use GET")
			return
		}
		if err := o.authorized(r); err != nil {
			WriteError(w, StatusOf(err), err.Error())
			return
		}
		lines := 0
		if s := r.URL.Query().Get("lines"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 100000 {
				WriteError(w, http.StatusBadRequest, "lines must be a whole number from 1 to 100000 (leave it out for the whole log)")
				return
			}
			lines = n
		}
		data, err := src.Logs(lines)
		if err != nil {
			WriteError(w, StatusOf(err), err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(data)
	})
}
