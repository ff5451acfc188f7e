package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// loadTLS checks and loads node's TLS material; nil when the cluster runs
// without TLS (insecure: true). A config that says neither is refused.
func loadTLS(cfg *config.Config, node config.Node) (*certs.Source, error) {
	if err := cfg.CheckSecure(); err != nil {
		return nil, err
	}
	if !cfg.TLS.Enabled() {
		return nil, nil
	}
	f := certs.Files(cfg.TLS.For(node.Name))
	if err := certs.Check(f); err != nil {
		return nil, fmt.Errorf("TLS files of node %s: %w", node.Name, err)
	}
	return certs.Load(f)
}

// serveLBCheck serves /lb-check and /healthz, and nothing else, in plain
// HTTP on api.lb_check_listen (${VAR}s from the node's env), for load balancers that cannot do TLS health
// checks. Off unless configured.
func serveLBCheck(cfg *config.Config, node config.Node, a *Agent, log *slog.Logger) (stop func(), err error) {
	addr := config.Expand(cfg.APIAuth.LBCheckListen, cfg.Vars(node))
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on api.lb_check_listen %s: %w", addr, err)
	}
	full := api.Handler(a, nil, api.Options{})
	mux := http.NewServeMux()
	mux.Handle("GET /lb-check", full)
	mux.Handle("GET /healthz", full)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, http.StatusNotFound, "this plain listener serves only /lb-check and /healthz; everything else is on the agent API over HTTPS")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("lb-check listener", "err", err)
		}
	}()
	log.Info("plain lb-check listener", "addr", addr)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// certWarnBefore is how long before its expiry a certificate is warned about.
const certWarnBefore = 30 * 24 * time.Hour

// securityWarnings are what status and the dashboard warn about: running
// without TLS, and this node's certificate expiring within 30 days.
func (a *Agent) securityWarnings(now time.Time) []string {
	if a.tls == nil {
		return []string{"This cluster runs without TLS (insecure: true): anyone on the network can read and change its store and read tokens and passwords. Run `haven certs init` and add a tls: section (docs/security.md)."}
	}
	na := a.tls.NotAfter()
	if left := na.Sub(now); !na.IsZero() && left < certWarnBefore {
		days := int(left.Hours() / 24)
		if left <= 0 {
			return []string{fmt.Sprintf("The certificate of %s (%s) expired on %s: issue a new one with `haven certs add %s` and send the agent SIGHUP.", a.node.Name, a.tls.Files().Cert, na.Format(time.DateOnly), a.node.Name)}
		}
		return []string{fmt.Sprintf("The certificate of %s (%s) expires in %d days, on %s: issue a new one with `haven certs add %s` and send the agent SIGHUP.", a.node.Name, a.tls.Files().Cert, days, na.Format(time.DateOnly), a.node.Name)}
	}
	return nil
}

// certCollector exports haven_cert_expiry_seconds for this node's
// certificate and the CA: the seconds left until each expires.
type certCollector struct{ a *Agent }

var certExpiryDesc = prometheus.NewDesc("haven_cert_expiry_seconds",
	"Seconds until the certificate expires (negative: expired), per certificate file.", []string{"cert"}, nil)

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.a.tls
	if src == nil {
		return
	}
	now := c.a.clk.Now()
	if na := src.NotAfter(); !na.IsZero() {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, na.Sub(now).Seconds(), src.Files().Cert)
	}
	if na, err := certs.NotAfter(src.Files().CA); err == nil {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, na.Sub(now).Seconds(), src.Files().CA)
	}
}

// tlsReloader returns what a SIGHUP runs to read this node's TLS files
// again (nil without TLS), and records a warning about certificates that
// expire soon: new connections to the API use the new certificate, open
// ones keep theirs, and the role does not move. (The embedded etcd reads
// its files for every handshake by itself.) Files that fail the checks
// change nothing.
func (a *Agent) tlsReloader(log *slog.Logger) func() {
	src := a.tls
	if src == nil {
		return nil
	}
	if w := a.securityWarnings(a.clk.Now()); len(w) > 0 {
		a.record(ha.Event{Kind: "tls", To: "expiring", Reason: w[0]})
	}
	return func() {
		if err := certs.Check(src.Files()); err != nil {
			log.Error("SIGHUP: the new TLS files are refused; the old certificate stays", "err", err)
			return
		}
		if err := src.Reload(); err != nil {
			log.Error("SIGHUP: TLS reload failed; the old certificate stays", "err", err)
			return
		}
		log.Info("SIGHUP: TLS certificate reloaded", "cert", src.Files().Cert, "not_after", src.NotAfter())
		reason := fmt.Sprintf("%s valid until %s", src.Files().Cert, src.NotAfter().Format(time.DateOnly))
		if w := a.securityWarnings(a.clk.Now()); len(w) > 0 {
			reason = w[0]
		}
		a.record(ha.Event{Kind: "tls", To: "reloaded", Reason: reason})
	}
}
