package cli

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
)

// initNode is one machine of the cluster `haven init` writes.
type initNode struct {
	Name, Host string
	Witness    bool
}

// initOptions are `haven init`'s inputs.
type initOptions struct {
	Cluster     string
	Nodes       []initNode // service nodes, then witnesses
	Store       string     // embedded, etcd, postgres, mysql
	Endpoints   []string   // etcd
	DSNFile     string     // postgres, mysql: where the machines keep the DSN
	Out         string     // where to write the files
	EtcDir      string     // where the files go on the machines
	DataDir     string
	Timing      string
	APIPort     int // peer APIPort+1, client APIPort+2
	ServicePort int
	Service     []string // the service's command; default: haven's sample service
	DashUser    string
	Force       bool
}

// nodeList is a repeatable --node NAME=HOST flag.
type nodeList struct {
	nodes   *[]initNode
	witness bool
}

func (l nodeList) String() string { return "" }

var (
	initClusterName = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)
	initNodeName    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)
)

func (l nodeList) Set(v string) error {
	name, host, ok := strings.Cut(v, "=")
	if !ok || name == "" || host == "" {
		return fmt.Errorf("want NAME=HOST (e.g. n1=10.0.0.1), got %q", v)
	}
	if !initNodeName.MatchString(name) {
		return fmt.Errorf("node name %q: use lower-case letters, digits and -, up to 31, starting with a letter or digit", name)
	}
	if strings.ContainsAny(host, ":/ ") && net.ParseIP(host) == nil {
		return fmt.Errorf("node %s: %q is not an IP address or host name (give the host only; the ports come from --api-port)", name, host)
	}
	*l.nodes = append(*l.nodes, initNode{Name: name, Host: host, Witness: l.witness})
	return nil
}

func runInit(args []string, out, errw io.Writer) int {
	fs := newFlags("init", errw)
	var o initOptions
	var nodes, witnesses []initNode
	fs.StringVar(&o.Cluster, "cluster", "", "the cluster's name: lower-case letters, digits and - (required)")
	fs.Var(nodeList{nodes: &nodes}, "node", "a node that runs the service, NAME=HOST (repeat: --node db1=10.0.0.1 --node db2=10.0.0.2)")
	fs.Var(nodeList{nodes: &witnesses, witness: true}, "witness", "a witness, NAME=HOST: an etcd vote only, for an odd member count (embedded store)")
	fs.StringVar(&o.Store, "store", "embedded", "the coordination store: embedded (etcd in the agents), etcd, postgres or mysql")
	endpoints := fs.String("endpoints", "", "with --store etcd: the etcd cluster's client endpoints, comma-separated")
	fs.StringVar(&o.DSNFile, "dsn-file", "", "with --store postgres|mysql: the file on every machine holding the connection string (default ETC/dsn)")
	fs.StringVar(&o.Out, "out", "", "folder to write haven.yaml, token and NODE.env into (required; must not hold a haven.yaml unless --force)")
	fs.StringVar(&o.EtcDir, "etc", "/etc/haven", "where the files go on the machines")
	fs.StringVar(&o.DataDir, "data-dir", "/var/lib/haven", "data_dir on the machines")
	fs.StringVar(&o.Timing, "timing", "lan", "timing preset: lan (one data centre), lan-fast (a dedicated low-jitter LAN: 1s lease) or wan")
	fs.IntVar(&o.APIPort, "api-port", 7400, "the agent API's port; etcd's peer and client ports are the next two")
	fs.IntVar(&o.ServicePort, "service-port", 5000, "the service's port on each node (SERVICE_ADDR)")
	service := fs.String("service", "/usr/bin/haven sample-service", "the service's command, split on spaces (default: haven's sample HTTP service, to try the cluster out)")
	fs.StringVar(&o.DashUser, "dashboard-user", "operator", "the dashboard operator's name")
	fs.BoolVar(&o.Force, "force", false, "overwrite the files in --out: a new token, dashboard password, CA and certificates")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	o.Nodes = append(nodes, witnesses...)
	o.Service = strings.Fields(*service)
	if *endpoints != "" {
		o.Endpoints = strings.Split(*endpoints, ",")
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(errw, "haven init: %v\n", err)
		return exitUsage
	}
	if err := writeInit(o, out); err != nil {
		fmt.Fprintf(errw, "haven init: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func (o *initOptions) check() error {
	var errs []error
	if !initClusterName.MatchString(o.Cluster) {
		errs = append(errs, fmt.Errorf("--cluster %q: give a name of lower-case letters, digits and -, up to 40", o.Cluster))
	}
	if o.Out == "" {
		errs = append(errs, errors.New("--out DIR is required: the folder to write the files into"))
	}
	service, members := 0, 0
	seen := map[string]bool{}
	for _, n := range o.Nodes {
		if seen[n.Name] {
			errs = append(errs, fmt.Errorf("node %s is named twice", n.Name))
		}
		seen[n.Name] = true
		if !n.Witness {
			service++
		}
		members++
	}
	if service == 0 {
		errs = append(errs, errors.New("no --node NAME=HOST: name every machine that runs the service"))
	}
	switch o.Store {
	case "embedded":
		if members%2 == 0 && members > 0 {
			errs = append(errs, fmt.Errorf("%d etcd members: an even number tolerates no more failures than one fewer; add a --witness NAME=HOST (or a node)", members))
		}
	case "etcd", "postgres", "mysql":
		if len(o.Nodes) > service {
			errs = append(errs, fmt.Errorf("--witness is a vote of the embedded etcd; with --store %s the store's own servers vote: drop it", o.Store))
		}
		if o.Store == "etcd" && len(o.Endpoints) == 0 {
			errs = append(errs, errors.New("--store etcd needs --endpoints HOST:PORT,... of the etcd cluster"))
		}
		if o.Store != "etcd" && o.DSNFile == "" {
			o.DSNFile = filepath.Join(o.EtcDir, "dsn")
		}
	default:
		errs = append(errs, fmt.Errorf("--store %q: use embedded, etcd, postgres or mysql", o.Store))
	}
	if o.Timing != "lan" && o.Timing != "lan-fast" && o.Timing != "wan" {
		errs = append(errs, fmt.Errorf("--timing %q: use lan, lan-fast or wan", o.Timing))
	}
	if o.APIPort < 1 || o.APIPort > 65533 || o.ServicePort < 1 || o.ServicePort > 65535 {
		errs = append(errs, errors.New("--api-port must be 1..65533 and --service-port 1..65535"))
	}
	if len(o.Service) == 0 {
		errs = append(errs, errors.New("--service is empty: give the service's command"))
	}
	if !initNodeName.MatchString(o.DashUser) {
		errs = append(errs, fmt.Errorf("--dashboard-user %q: use lower-case letters, digits and -", o.DashUser))
	}
	if !filepath.IsAbs(o.EtcDir) || !filepath.IsAbs(o.DataDir) {
		errs = append(errs, errors.New("--etc and --data-dir must be absolute paths"))
	}
	return errors.Join(errs...)
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, fmt.Sprint(port)) }

// initConfig renders the cluster's haven.yaml.
func initConfig(o initOptions, dashHash string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by haven init. The same file on every node; /etc/default/haven
# names each node (HAVEN_NODE=). Check it with: haven config check FILE
cluster: %s
mode: active-passive
data_dir: %s
timing: %s
api:
  token_file: %s   # operator commands send it; keep it secret
`, o.Cluster, o.DataDir, o.Timing, filepath.Join(o.EtcDir, "token"))
	switch o.Store {
	case "etcd":
		fmt.Fprintf(&b, "store:\n  backend: etcd\n  endpoints: [%s]\n", strings.Join(o.Endpoints, ", "))
	case "postgres", "mysql":
		fmt.Fprintf(&b, "store:\n  backend: %s\n  dsn_file: %s   # write the connection string there on every machine\n", o.Store, o.DSNFile)
	}
	b.WriteString("nodes:\n")
	for _, n := range o.Nodes {
		if n.Witness {
			fmt.Fprintf(&b, "  - {name: %s, witness: true, peer: %q, client: %q}\n", n.Name, hostPort(n.Host, o.APIPort+1), hostPort(n.Host, o.APIPort+2))
			continue
		}
		svc := hostPort(n.Host, o.ServicePort)
		fmt.Fprintf(&b, "  - {name: %s, api: %q, peer: %q, client: %q, backend: %q, env: {SERVICE_ADDR: %q}}\n",
			n.Name, hostPort(n.Host, o.APIPort), hostPort(n.Host, o.APIPort+1), hostPort(n.Host, o.APIPort+2), svc, svc)
	}
	var cmd []string
	for _, c := range o.Service {
		cmd = append(cmd, fmt.Sprintf("%q", c))
	}
	fmt.Fprintf(&b, `service:
  command: [%s]
  standby: hot
  stop_grace: 5s
  restart: always
checks:
  - name: service-http
    http: {url: "http://${SERVICE_ADDR}/healthz", expect_status: 200}
    interval: 200ms
    timeout: 200ms
dashboard:
  users:
    - {name: %s, role: operator, password_hash: %q}
log: {level: info, format: json}
tls:   # mutual TLS: the agent API, the dashboard, etcd's peers and clients
  ca_file: %s
  cert_file: %s
  key_file: %s
`, strings.Join(cmd, ", "), o.DashUser, dashHash,
		filepath.Join(initTLSDir(o), "ca.crt"), filepath.Join(initTLSDir(o), "${NODE}.crt"), filepath.Join(initTLSDir(o), "${NODE}.key"))
	return b.String()
}

// randomSecret is n random bytes, base64url without padding.
func randomSecret(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// writeInit writes the cluster's files into o.Out and prints what to copy
// where.
func writeInit(o initOptions, out io.Writer) error {
	cfgPath := filepath.Join(o.Out, "haven.yaml")
	if _, err := os.Stat(cfgPath); err == nil && !o.Force {
		return fmt.Errorf("%s exists; pass --force to overwrite it (the cluster's token, dashboard password, CA and certificates change)", cfgPath)
	}
	certDir := filepath.Join(o.Out, "certs")
	if _, caKey := certs.Layout(certDir); !o.Force {
		if _, err := os.Stat(caKey); err == nil {
			return fmt.Errorf("%s holds a CA already (%s); pass --force to replace it and every certificate it issued", certDir, caKey)
		}
	}
	if err := os.MkdirAll(o.Out, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", o.Out, err)
	}
	token, err := randomSecret(24)
	if err != nil {
		return err
	}
	password, err := randomSecret(15)
	if err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), 12)
	if err != nil {
		return err
	}
	cfgText := initConfig(o, string(hash))
	// Check the config as the machines will read it: with the token file
	// where it will be.
	check := filepath.Join(o.Out, ".haven-init-check.yaml")
	localToken, err := filepath.Abs(filepath.Join(o.Out, "token"))
	if err != nil {
		return err
	}
	checkText := strings.Replace(cfgText, filepath.Join(o.EtcDir, "token"), localToken, 1)
	if err := os.WriteFile(check, []byte(checkText), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(localToken, []byte(token+"\n"), 0o600); err != nil {
		os.Remove(check)
		return fmt.Errorf("write token: %w", err)
	}
	cfg, err := config.Load(check)
	os.Remove(check)
	if err != nil {
		return fmt.Errorf("the config written is not valid (a bug in haven init; please report it): %w", err)
	}
	if err := initCerts(certDir, cfg, o.Force); err != nil {
		return err
	}
	files := map[string]string{"haven.yaml": cfgText}
	for _, n := range o.Nodes {
		files[n.Name+".env"] = fmt.Sprintf("# /etc/default/haven on %s (%s)\nHAVEN_NODE=%s\nHAVEN_CONFIG=%s\n", n.Name, n.Host, n.Name, filepath.Join(o.EtcDir, "haven.yaml"))
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(o.Out, name), []byte(text), 0o640); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	printInitPlan(out, o, password)
	return nil
}

// initCerts writes the cluster's TLS files into dir with certs.InitFor: a
// CA, one certificate per node (witnesses too: they are etcd members) and
// the operator's, keys 0600. With force it first removes an older CA there
// (its certificates would not fit the new config's token and nodes anyway).
func initCerts(dir string, cfg *config.Config, force bool) error {
	if force {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove the old certificates in %s: %w", dir, err)
		}
	}
	if err := certs.InitFor(dir, cfg); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	return nil
}

// initTLSDir is where the certificates live on the machines.
func initTLSDir(o initOptions) string { return filepath.Join(o.EtcDir, "certs") }

func printInitPlan(w io.Writer, o initOptions, password string) {
	fmt.Fprintf(w, "haven init: wrote the cluster %s into %s: haven.yaml, token", o.Cluster, o.Out)
	for _, n := range o.Nodes {
		fmt.Fprintf(w, ", %s.env", n.Name)
	}
	fmt.Fprintf(w, ", and in certs/ a CA (ca.crt, ca.key) and a certificate and key for every node and the operator\n")
	fmt.Fprintf(w, "\nDashboard operator: user %s, password %s\n  (shown this once: haven.yaml holds only its bcrypt hash)\n", o.DashUser, password)
	tlsDir := initTLSDir(o)
	fmt.Fprintf(w, "\nOn every machine, as root, after installing the package (apt install ./haven_*.deb),\nwith the files below copied from %s:\n", o.Out)
	for _, n := range o.Nodes {
		unit := "haven"
		if n.Witness {
			unit = "haven-witness"
		}
		fmt.Fprintf(w, "  %s (%s): copy haven.yaml token %s.env certs/ca.crt certs/%s.crt certs/%s.key\n", n.Name, n.Host, n.Name, n.Name, n.Name)
		fmt.Fprintf(w, "    install -d -m 0750 -g haven %s %s\n", o.EtcDir, tlsDir)
		fmt.Fprintf(w, "    install -m 0640 -g haven haven.yaml token %s/\n", o.EtcDir)
		fmt.Fprintf(w, "    install -m 0644 certs/ca.crt certs/%s.crt %s/\n", n.Name, tlsDir)
		fmt.Fprintf(w, "    install -m 0600 -o haven -g haven certs/%s.key %s/\n", n.Name, tlsDir)
		fmt.Fprintf(w, "    install -m 0644 %s.env /etc/default/haven\n", n.Name)
		fmt.Fprintf(w, "    systemctl enable --now %s\n", unit)
	}
	if o.DSNFile != "" {
		fmt.Fprintf(w, "  and on each: the store's connection string in %s (mode 0640, group haven)\n", o.DSNFile)
	}
	fmt.Fprintf(w, "\nKeep certs/ca.key on this workstation only, never on a machine: it makes new certificates\n  (haven certs add --config %s --out %s NODE).\n",
		filepath.Join(o.Out, "haven.yaml"), filepath.Join(o.Out, "certs"))
	fmt.Fprintf(w, "certs/%s.crt and .key are the operator's: they stay with you. To run haven commands from a\n  machine of yours, put them with certs/ca.crt in %s (key mode 0600) beside haven.yaml and token in %s.\n  On the cluster's machines the commands use TLS with ca.crt and the token; haven store\n  export|import|snapshot open the store themselves and need the operator's certificate.\n",
		certs.Operator, tlsDir, o.EtcDir)
	fmt.Fprintf(w, "\nPorts to open between the machines: %d/tcp (agent API, dashboard, /metrics; HTTPS)", o.APIPort)
	if o.Store == "embedded" {
		fmt.Fprintf(w, ", %d/tcp (etcd peers), %d/tcp (etcd clients); all mutual TLS", o.APIPort+1, o.APIPort+2)
	}
	fmt.Fprintf(w, "; clients reach the service on %d/tcp.\n", o.ServicePort)
	fmt.Fprintln(w, "Start order: any. No node becomes active before a majority of the store's members is up.")
	fmt.Fprintf(w, "Then: haven status --config %s/haven.yaml   (exit 0: one active, redundancy intact)\n", o.EtcDir)
}

var _ flag.Value = nodeList{}
