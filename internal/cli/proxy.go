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
	"github.com/haven-ha/haven/internal/node"
	"github.com/haven-ha/haven/internal/proxy"
	"github.com/haven-ha/haven/internal/store/storedial"
)

// runProxy runs haven's proxy on its own: it watches the store and sends
// clients to the active node. Any number of them can run.
func runProxy(args []string, out, errw io.Writer) int {
	fs := newFlags("proxy", errw)
	cfgPath := configFlag(fs)
	listen := fs.String("listen", "", "address to take client traffic on (default: proxy.listen in the config)")
	mode := fs.String("mode", "", "http or tcp (default: proxy.mode in the config, else http)")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	cfg, code := loadConfig(*cfgPath, errw)
	if cfg == nil {
		return code
	}
	pc := cfg.Proxy
	if pc.Listen == "" && *listen == "" {
		fmt.Fprintf(errw, "haven proxy: %s gives the proxy no address; add one (proxy: {listen: 0.0.0.0:8080}, with standalone: true if only `haven proxy` should use it) or pass --listen ADDR\n", cfg.Path)
		return exitUsage
	}
	if pc.Mode == "" {
		pc = config.ProxyDefaults()
	}
	if *listen != "" {
		pc.Listen = *listen
	}
	switch *mode {
	case "":
	case "http", "tcp":
		if *mode == "tcp" && pc.Sticky.Mode != "" && pc.Sticky.Mode != proxy.AffinityNone && pc.Sticky.Mode != proxy.AffinitySource {
			fmt.Fprintf(errw, "haven proxy: --mode tcp cannot do proxy.sticky.mode %s (it needs HTTP); use --mode http or sticky mode source\n", pc.Sticky.Mode)
			return exitUsage
		}
		pc.Mode = proxy.Protocol(*mode)
	default:
		fmt.Fprintf(errw, "haven proxy: --mode %q: use http or tcp\n", *mode)
		return exitUsage
	}
	if strings.Contains(pc.Listen, "$") {
		fmt.Fprintf(errw, "haven proxy: proxy.listen %q uses node variables, which only an agent can expand; pass --listen ADDR\n", pc.Listen)
		return exitUsage
	}
	nodes, err := node.ProxyNodes(cfg)
	if err != nil {
		fmt.Fprintf(errw, "haven proxy: %v\n", err)
		return exitUsage
	}
	if err := storedial.CheckDSN(cfg); err != nil {
		fmt.Fprintf(errw, "haven proxy: %v\n", err)
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	// Any store: the proxy only watches it and reads the epoch counter to
	// know it is reachable (an etcd quorum read, a database round trip).
	store, err := dialStoreForProxy(ctx, cfg)
	if err != nil {
		fmt.Fprintf(errw, "haven proxy: %v\n", err)
		if errors.Is(err, storedial.ErrConfig) {
			return exitUsage
		}
		return exitFailure
	}
	defer store.Close()
	// An etcd client spreads over every member; one that freezes must not
	// freeze the proxy's view of who is active for longer than this.
	if es, ok := store.(interface{ SetWatchStall(time.Duration) }); ok {
		es.SetWatchStall(max(cfg.Timing.LeaseTTL/4, 300*time.Millisecond))
	}
	log := newLogger(cfg, errw)
	apiTLS, err := node.ProxyAPITLS(cfg, "")
	if err != nil {
		fmt.Fprintf(errw, "haven proxy: %v\n", err)
		return exitFailure
	}
	p, err := proxy.New(proxy.Options{
		APITLS:   apiTLS,
		Config:   pc,
		Mode:     cfg.Mode,
		LeaseTTL: cfg.Timing.LeaseTTL,
		Nodes:    nodes,
		Source:   store,
		Ping: func(ctx context.Context) error {
			_, err := store.MaxEpoch(ctx)
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
	reloadOnHUP(ctx, cfg, log).Add(p.Reload)
	if err := p.Run(ctx); err != nil {
		fmt.Fprintf(errw, "haven proxy: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// dialStoreForProxy connects to the cluster's store, retrying while it
// does not answer (a proxy may start before its database), until ctx ends.
func dialStoreForProxy(ctx context.Context, cfg *config.Config) (storedial.Store, error) {
	for backoff := 200 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		st, err := storedial.Open(ctx, cfg, config.Node{})
		if err == nil || errors.Is(err, storedial.ErrConfig) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to the %s store: %w", cfg.Store.Backend, err)
		case <-time.After(backoff):
		}
	}
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
