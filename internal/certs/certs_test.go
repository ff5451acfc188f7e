package certs

import (
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitAddCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	nodes := []Node{{Name: "n1", Hosts: []string{"127.0.0.1", "db1.example"}}, {Name: "n2", Hosts: []string{"::1"}}}
	if err := Init(dir, "demo", nodes); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, "demo", nodes); err == nil || !strings.Contains(err.Error(), "already holds a CA") {
		t.Fatalf("a second init must refuse to replace the CA: %v", err)
	}
	if err := Add(dir, Node{Name: "n3", Hosts: []string{"10.0.0.3"}}); err != nil {
		t.Fatal(err)
	}
	ca, _ := Layout(dir)
	for _, name := range []string{"n1", "n2", "n3", Operator} {
		cert, key := Paths(dir, name)
		if err := Check(Files{CA: ca, Cert: cert, Key: key}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode: %v %v", st.Mode(), err)
	}
	// The SANs are the node's addresses and its name.
	pair, err := tls.LoadX509KeyPair(Paths(dir, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if err := pair.Leaf.VerifyHostname("db1.example"); err != nil {
		t.Error(err)
	}
	if err := pair.Leaf.VerifyHostname("10.0.0.3"); err == nil {
		t.Error("n1's certificate must not name n3's address")
	}
	if err := Add(dir, Node{Name: "../evil"}); err == nil {
		t.Error("a node name with a path in it must be refused")
	}
}

func TestCheckRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, "c", []Node{{Name: "a", Hosts: []string{"127.0.0.1"}}, {Name: "b"}}); err != nil {
		t.Fatal(err)
	}
	ca, _ := Layout(dir)
	certA, keyA := Paths(dir, "a")
	_, keyB := Paths(dir, "b")
	other, err := NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, foreignKey := filepath.Join(dir, "f.crt"), filepath.Join(dir, "f.key")
	if _, err := other.Issue(foreignCert, foreignKey, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	realCA, err := LoadCA(Layout(dir))
	if err != nil {
		t.Fatal(err)
	}
	oldCert, oldKey := filepath.Join(dir, "old.crt"), filepath.Join(dir, "old.key")
	if _, err := realCA.IssueFiles(oldCert, oldKey, IssueOptions{Name: "a", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	openKey := filepath.Join(dir, "open.key")
	data, _ := os.ReadFile(keyA)
	if err := os.WriteFile(openKey, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    Files
		want string
	}{
		{"key readable by others", Files{ca, certA, openKey}, "chmod 600"},
		{"key of another certificate", Files{ca, certA, keyB}, "give the key that was made with this certificate"},
		{"another CA", Files{ca, foreignCert, foreignKey}, "not signed by the CA"},
		{"expired", Files{ca, oldCert, oldKey}, "expired on"},
		{"no CA file", Files{filepath.Join(dir, "none.crt"), certA, keyA}, "CA file"},
	} {
		err := Check(tc.f)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestSourceReload: a server built from a Source presents the certificate
// loaded last to new connections; mutual TLS refuses a client without a
// certificate and one from another CA.
func TestSourceReload(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, "c", []Node{{Name: "a", Hosts: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	ca, _ := Layout(dir)
	cert, key := Paths(dir, "a")
	srv, err := Load(Files{ca, cert, key})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerConfig(true))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = io.WriteString(c, "hi")
			}()
		}
	}()
	opCert, opKey := Paths(dir, Operator)
	cli, err := Load(Files{ca, opCert, opKey})
	if err != nil {
		t.Fatal(err)
	}
	serial := func(cfg *tls.Config) (string, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return "", err
		}
		defer c.Close()
		if _, err := io.ReadAll(c); err != nil {
			return "", err
		}
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	first, err := serial(cli.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := Add(dir, Node{Name: "a", Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if s, _ := serial(cli.ClientConfig()); s != first {
		t.Fatalf("the certificate changed before Reload")
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if s, err := serial(cli.ClientConfig()); err != nil || s == first {
		t.Fatalf("after Reload: %s %v, want a new serial", s, err)
	}
	// No client certificate; one from another CA.
	noCert, _ := Load(Files{CA: ca})
	if _, err := serial(noCert.ClientConfig()); err == nil {
		t.Error("a client without a certificate got through mutual TLS")
	}
	other, _ := NewCA("other", time.Hour)
	oc, ok := filepath.Join(dir, "o.crt"), filepath.Join(dir, "o.key")
	if _, err := other.Issue(oc, ok, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	foreign, err := Load(Files{CA: ca, Cert: oc, Key: ok})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serial(foreign.ClientConfig()); err == nil {
		t.Error("a client with another CA's certificate got through mutual TLS")
	}

}
