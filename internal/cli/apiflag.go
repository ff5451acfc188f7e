package cli

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
)

// apiTarget is the --api flag and the TLS files to reach that agent
// without a config: --cacert to verify it, --cert/--key to present a
// client certificate.
type apiTarget struct {
	url, caFile, certFile, keyFile *string
}

func apiFlags(fs *flag.FlagSet) apiTarget {
	return apiTarget{
		url:      fs.String("api", "", "ask this agent (base URL, http:// or https://) instead of the ones in the config"),
		caFile:   fs.String("cacert", "", "with an https --api: the cluster's CA certificate to verify the agent with (ca.crt from haven certs init)"),
		certFile: fs.String("cert", "", "with an https --api: a client certificate to present (e.g. operator.crt); needs --key"),
		keyFile:  fs.String("key", "", "the key of --cert (e.g. operator.key)"),
	}
}

// set reports whether --api was given.
func (a apiTarget) set() bool { return *a.url != "" }

// client checks --api and its TLS files and returns the agent's base URL
// and a client for it. fromConfig, when a config was given, makes the
// config's client: it serves an https --api that names no --cacert.
func (a apiTarget) client(timeout time.Duration, fromConfig func() (*api.Client, error)) (string, *api.Client, error) {
	raw := strings.TrimRight(*a.url, "/")
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", nil, fmt.Errorf("--api %q is not an agent's base URL: give http://HOST:PORT or https://HOST:PORT", *a.url)
	}
	if (*a.certFile == "") != (*a.keyFile == "") {
		return "", nil, errors.New("--cert and --key go together: give both (the operator's certificate and its key) or neither")
	}
	tlsFlags := *a.caFile != "" || *a.certFile != ""
	if u.Scheme == "http" {
		if tlsFlags {
			return "", nil, fmt.Errorf("--cacert, --cert and --key are for an https agent, but --api is %s: use https:// (agents of a cluster with tls: speak only HTTPS)", raw)
		}
		return raw, api.NewClient(api.ClientOptions{Timeout: timeout}), nil
	}
	if !tlsFlags && fromConfig != nil {
		c, err := fromConfig()
		return raw, c, err
	}
	if *a.caFile == "" {
		return "", nil, fmt.Errorf("--api %s is https, and haven verifies the agent's certificate: pass --cacert with the cluster's CA (ca.crt from haven certs init, /etc/haven/certs/ca.crt on the machines), or --config FILE of a cluster that has a tls: section", raw)
	}
	files := certs.Files{CA: *a.caFile, Cert: *a.certFile, Key: *a.keyFile}
	if files.Cert != "" {
		// ClientTLS leaves out a certificate it cannot read; one named
		// on the command line must be there and fit.
		if err := certs.Check(files); err != nil {
			return "", nil, fmt.Errorf("--cacert/--cert/--key: %w", err)
		}
	}
	t, err := certs.ClientTLS(files)
	if err != nil {
		return "", nil, fmt.Errorf("--cacert/--cert/--key: %w", err)
	}
	return raw, api.NewClient(api.ClientOptions{Timeout: timeout, TLS: t}), nil
}
