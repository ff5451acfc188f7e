package proxy

import "time"

// Settings configure the proxy (the config's proxy: section). Listen empty
// means no proxy. The proxy sends client traffic to the node(s) that should
// get it, from the roles in the store and its own probes of each node's
// /lb-check.
type Settings struct {
	Listen        string        // host:port; may use ${VAR}s of the node when run inside an agent
	MetricsListen string        // optional host:port for /metrics of the proxy
	Mode          Protocol      // http (default) or tcp
	HoldTimeout   time.Duration // how long a request or connection waits for a target
	HoldQueue     int           // most requests waiting for a target at once
	Retries       int           // retries of an idempotent request that failed before any response byte
	ProbeInterval time.Duration // the proxy's own GET of each node's /lb-check
	DrainGrace    time.Duration // in-flight requests to a demoted node may finish this long
	TLS           TLS           // termination; zero: plain
	BackendTLS    BackendTLS    // towards the nodes' backends
	Sticky        Sticky
	Limits        Limits
	AccessLog     bool
	// Standalone: only `haven proxy` uses this section; agents start no
	// proxy of their own (Listen may then be empty and given by --listen).
	Standalone bool
}

// Protocol is what the proxy speaks with clients (proxy.mode).
type Protocol string

// Protocols.
const (
	ProtocolHTTP Protocol = "http" // requests, routed one by one
	ProtocolTCP  Protocol = "tcp"  // connections, spliced to a backend
)

// Affinity is how sticky sessions keep a client on one node (proxy.sticky.mode).
type Affinity string

// Affinities.
const (
	AffinityNone   Affinity = "none"   // no affinity (the default)
	AffinityCookie Affinity = "cookie" // a signed cookie names the node
	AffinityHeader Affinity = "header" // a header's value is hashed
	AffinitySource Affinity = "source" // the client's address is hashed
)

// TLS is the certificate the proxy presents (PEM files, reloaded on SIGHUP).
type TLS struct {
	Cert, Key string
}

// Enabled reports whether the proxy terminates TLS.
func (t TLS) Enabled() bool { return t.Cert != "" }

// BackendTLS configures TLS from the proxy to the backends.
type BackendTLS struct {
	Enabled    bool
	CAFile     string // PEM bundle to verify backends with; empty: the system's
	ServerName string // name to verify; empty: the backend's host
}

// Sticky configures session affinity (used when several nodes get traffic).
type Sticky struct {
	Mode    Affinity
	Cookie  string // cookie name (mode cookie)
	Header  string // header whose value is hashed (mode header)
	Key     string // HMAC secret for the cookie, at least 16 bytes
	KeyFile string // or a file holding it
}

// Limits bound what one client may send and how long it may idle.
type Limits struct {
	MaxHeaderBytes    int
	MaxBodyBytes      int64
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
}

// Proxy defaults.
const (
	defaultHoldTimeout       = 5 * time.Second
	defaultHoldQueue         = 10000
	defaultRetries           = 3
	defaultProbeInterval     = 100 * time.Millisecond
	defaultDrainGrace        = 5 * time.Second
	defaultStickyCookie      = "HAVEN_AFFINITY"
	defaultMaxHeaderBytes    = 64 << 10
	defaultMaxBodyBytes      = 10 << 20
	defaultReadHeaderTimeout = 10 * time.Second
	defaultIdleTimeout       = 60 * time.Second
)

// Defaults returns the settings used for every field a `proxy:` section
// leaves out.
func Defaults() Settings {
	return Settings{
		Mode:          ProtocolHTTP,
		HoldTimeout:   defaultHoldTimeout,
		HoldQueue:     defaultHoldQueue,
		Retries:       defaultRetries,
		ProbeInterval: defaultProbeInterval,
		DrainGrace:    defaultDrainGrace,
		Sticky:        Sticky{Mode: AffinityNone, Cookie: defaultStickyCookie},
		Limits: Limits{
			MaxHeaderBytes:    defaultMaxHeaderBytes,
			MaxBodyBytes:      defaultMaxBodyBytes,
			ReadHeaderTimeout: defaultReadHeaderTimeout,
			IdleTimeout:       defaultIdleTimeout,
		},
	}
}
