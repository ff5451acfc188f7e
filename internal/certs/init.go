package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// Operator is the name of the certificate for the CLI and people.
const Operator = "operator"

// Node is a party to issue a certificate for.
type Node struct {
	Name  string
	Hosts []string // the IP addresses and DNS names it is reached at
}

// Layout is where Init puts things in its directory; a config's tls: section
// can name them with ${NODE} (see Paths).
func Layout(dir string) (caCert, caKey string) {
	return filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
}

// Paths are the certificate and key files of name in dir.
func Paths(dir, name string) (cert, key string) {
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Init creates dir (0700), a CA for cluster in it, a certificate for every
// node and one for operators. It refuses to overwrite a CA already there:
// every certificate issued with it would stop working.
func Init(dir, cluster string, nodes []Node) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	caCert, caKey := Layout(dir)
	if _, err := os.Stat(caKey); err == nil {
		return fmt.Errorf("%s already holds a CA (%s); to add a node use `haven certs add NODE`, to start over move the directory away first", dir, caKey)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ca, err := NewCA("haven "+cluster+" CA", CAValidity)
	if err != nil {
		return err
	}
	if err := ca.WriteFiles(caCert, caKey); err != nil {
		return fmt.Errorf("write the CA: %w", err)
	}
	for _, n := range append(nodes, Node{Name: Operator}) {
		if err := issue(ca, dir, n); err != nil {
			return err
		}
	}
	return nil
}

// Add issues a certificate for n with the CA that Init wrote in dir.
func Add(dir string, n Node) error {
	caCert, caKey := Layout(dir)
	ca, err := LoadCA(caCert, caKey)
	if err != nil {
		return err
	}
	return issue(ca, dir, n)
}

func issue(ca *CA, dir string, n Node) error {
	if !nodeName.MatchString(n.Name) {
		return fmt.Errorf("node name %q cannot name a certificate file; use letters, digits, '.', '_' or '-'", n.Name)
	}
	hosts := append([]string{n.Name}, n.Hosts...)
	cert, key := Paths(dir, n.Name)
	if _, err := ca.IssueFiles(cert, key, IssueOptions{Name: n.Name, Hosts: dedupe(hosts)}); err != nil {
		return fmt.Errorf("issue the certificate of %s: %w", n.Name, err)
	}
	return nil
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
