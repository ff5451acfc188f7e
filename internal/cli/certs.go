package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
)

// hostsOf is the hosts of n's addresses, as certs.NodesOf names them.
func hostsOf(n config.Node) []string {
	for _, cn := range certs.NodesOf(&config.Config{Nodes: []config.Node{n}}) {
		return cn.Hosts
	}
	return nil
}

// certDir is where the certificates of cfg live: --out, else the folder of
// tls.ca_file, else certs/ beside the config file.
func certDir(cfg *config.Config, out string) string {
	switch {
	case out != "":
		return out
	case cfg.TLS.Enabled():
		return filepath.Dir(cfg.TLS.CAFile)
	}
	return filepath.Join(filepath.Dir(cfg.Path), "certs")
}

func runCerts(args []string, out, errw io.Writer) int {
	usage := "usage: haven certs init --config FILE [--out DIR] | haven certs add --config FILE [--out DIR] NODE"
	if len(args) == 0 || (args[0] != "init" && args[0] != "add") {
		fmt.Fprintln(errw, usage)
		return exitUsage
	}
	action := args[0]
	fs := newFlags("certs "+action, errw)
	cfgPath := configFlag(fs)
	outDir := fs.String("out", "", "folder for the CA and certificates (default: tls.ca_file's folder, else certs/ beside the config)")
	nargs := 0
	if action == "add" {
		nargs = 1
	}
	if code, ok := parse(fs, args[1:], nargs); !ok {
		return code
	}
	if fs.NArg() != nargs {
		fmt.Fprintln(errw, usage)
		return exitUsage
	}
	cfg, code := loadConfig(*cfgPath, errw)
	if cfg == nil {
		return code
	}
	dir := certDir(cfg, *outDir)
	if action == "add" {
		name := fs.Arg(0)
		n, ok := cfg.NodeByName(name)
		if !ok && name != certs.Operator {
			fmt.Fprintf(errw, "haven certs add: no node %q in %s; add it to nodes: first (its addresses go into the certificate)\n", name, cfg.Path)
			return exitUsage
		}
		if err := certs.Add(dir, certs.Node{Name: name, Hosts: hostsOf(n)}); err != nil {
			fmt.Fprintf(errw, "haven certs add: %v\n", err)
			return exitFailure
		}
		cert, key := certs.Paths(dir, name)
		fmt.Fprintf(out, "wrote %s and %s; copy them to %s and send its agent SIGHUP (or start it)\n", cert, key, name)
		return exitOK
	}
	if err := certs.InitFor(dir, cfg); err != nil {
		fmt.Fprintf(errw, "haven certs init: %v\n", err)
		return exitFailure
	}
	abs, _ := filepath.Abs(dir)
	caCert, caKey := certs.Layout(abs)
	fmt.Fprintf(out, `wrote a CA and certificates for %d nodes and the operator to %s.
Keep %s off the nodes (it makes new certificates: haven certs add NODE).
Copy ca.crt and each node's NAME.crt and NAME.key to that node, and add to the config:

tls:
  ca_file: %s
  cert_file: %s
  key_file: %s
`, len(cfg.Nodes), abs, caKey, caCert, filepath.Join(abs, "${NODE}.crt"), filepath.Join(abs, "${NODE}.key"))
	if _, err := os.Stat(caKey); err != nil {
		fmt.Fprintf(errw, "haven certs init: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// checkTLS is config check's part for TLS: the secure default, and every
// node's files that are on this machine (a node holds only its own key).
func checkTLS(cfg *config.Config, out io.Writer) error {
	if err := cfg.CheckSecure(); err != nil {
		return err
	}
	if !cfg.TLS.Enabled() {
		return nil
	}
	found := 0
	var problems []string
	for _, name := range append(nodeNamesOf(cfg), certs.Operator) {
		f := cfg.TLS.For(name)
		if _, err := os.Stat(f.Cert); err != nil {
			continue // not on this machine
		}
		found++
		if err := certs.Check(certs.Files(f)); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if na, err := certs.NotAfter(f.Cert); err == nil {
			fmt.Fprintf(out, "tls: %s's certificate %s is valid until %s\n", name, f.Cert, na.Format("2006-01-02"))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("tls: %s", joinLines(problems))
	}
	if found == 0 {
		return fmt.Errorf("tls: no node's certificate is on this machine (looked for %s); run `haven certs init --config %s` or copy the node's files here", cfg.TLS.CertFile, cfg.Path)
	}
	return nil
}

func nodeNamesOf(cfg *config.Config) []string {
	var names []string
	for _, n := range cfg.Nodes {
		names = append(names, n.Name)
	}
	return names
}

func joinLines(list []string) string {
	s := ""
	for i, l := range list {
		if i > 0 {
			s += "\n  "
		}
		s += l
	}
	return s
}
