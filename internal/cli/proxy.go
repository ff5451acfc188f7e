package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/proxy"
	"github.com/haven-ha/haven/internal/store/etcdstore"
)

// runProxy runs haven's proxy on its own: it watches the store and sends
// clients to the active node. Any number of them can run.
func runProxy(args []string, out, errw io.Writer) int {
	fs := newFlags("proxy", errw)
	cfgPath := configFlag(fs)
	listen := fs.String("listen", "", "address to take client traffic on (default: proxy.listen in the config)")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	cfg, code := loadConfig(*cfgPath, errw)
	if cfg == nil {
		return code
	}
	pc := cfg.Proxy
	if pc.Listen == "" && *listen == "" {
		fmt.Fprintf(errw, "haven proxy: %s has no proxy: section; add one (proxy: {listen: 0.0.0.0:8080}) or pass --listen ADDR\n", cfg.Path)
		return exitUsage
	}
	if pc.Mode == "" {
		pc = config.ProxyDefaults()
	}
	if *listen != "" {
		pc.Listen = *listen
	}
	if strings.Contains(pc.Listen, "$") {
		fmt.Fprintf(errw, "haven proxy: proxy.listen %q uses node variables, which only an agent can expand; pass --listen ADDR\n", pc.Listen)
		return exitUsage
	}
	nodes, err := proxy.NodesFrom(cfg)
	if err != nil {
		fmt.Fprintf(errw, "haven proxy: %v\n", err)
		return exitUsage
	}
	store, err := dialStoreForProxy(cfg)
	if err != nil {
		fmt.Fprintf(errw, "haven proxy: %v\n", err)
		return exitUsage
	}
	defer store.Close()
	// The client spreads over every member; one that freezes must not
	// freeze the proxy's view of who is active for longer than this.
	store.SetWatchStall(max(cfg.Timing.LeaseTTL/4, 300*time.Millisecond))
	log := newLogger(cfg, errw)
	key := "/haven/" + cfg.Cluster + "/leader"
	p, err := proxy.New(proxy.Options{
		Config:   pc,
		Mode:     cfg.Mode,
		LeaseTTL: cfg.Timing.LeaseTTL,
		Nodes:    nodes,
		Source:   store,
		Ping: func(ctx context.Context) error {
			_, err := store.Client().Get(ctx, key) // a quorum read
			return err
		},
		Log: log,
	})
	if err != nil {
		fmt.Fprintf(errw, "haven proxy: %v\n", err)
		return exitUsage
	}
	// The proxy's heap is small and short-lived; collecting it less often
	// buys throughput (GOGC=400 unless the environment says otherwise).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signalContext()
	defer stop()
	go p.ReloadOnHUP(ctx)
	if err := p.Run(ctx); err != nil {
		fmt.Fprintf(errw, "haven proxy: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// dialStoreForProxy connects to the etcd the cluster uses: the members
// embedded in the agents, or an external cluster.
func dialStoreForProxy(cfg *config.Config) (*etcdstore.Store, error) {
	switch cfg.Store.Backend {
	case "", config.BackendEmbedded:
		var eps []string
		for _, n := range cfg.Nodes {
			eps = append(eps, n.Client)
		}
		return etcdstore.Dial(cfg.Cluster, eps, 2*time.Second)
	case config.BackendEtcd:
		o := etcdstore.Options{
			Endpoints: cfg.Store.Endpoints, CAFile: cfg.Store.TLS.CAFile, CertFile: cfg.Store.TLS.CertFile,
			KeyFile: cfg.Store.TLS.KeyFile, Username: cfg.Store.Username,
		}
		if cfg.Store.PasswordFile != "" {
			b, err := os.ReadFile(cfg.Store.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("store password: %w", err)
			}
			o.Password = strings.TrimSpace(string(b))
		}
		return etcdstore.DialOptions(cfg.Cluster, o)
	}
	return nil, fmt.Errorf("a standalone proxy supports the embedded and etcd stores, not %s; run the proxy inside the agents instead (a proxy: section in the config)", cfg.Store.Backend)
}

// runBenchBackend is a minimal HTTP server for bench/proxy.sh: GET / answers
// "ok", GET /bytes?n=N answers N bytes. No agent, no role checks.
func runBenchBackend(args []string, out, errw io.Writer) int {
	fs := newFlags("bench-backend", errw)
	listen := fs.String("listen", "127.0.0.1:18080", "address to serve on")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(errw, "haven bench-backend: %v\n", err)
		return exitFailure
	}
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = 'x'
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		n = min(max(n, 0), 64<<20)
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k := min(n, len(block))
			if _, err := w.Write(block[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signalContext()
	defer stop()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(errw, "haven bench-backend: %v\n", err)
		return exitFailure
	}
	return exitOK
}
