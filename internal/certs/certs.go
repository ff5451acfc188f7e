// Package certs makes, checks and loads the cluster's TLS material: a CA,
// one certificate per node and one for operators, and the tls.Configs that
// the agents, the CLI and the tests build from them. It uses crypto/x509
// from the standard library for everything; it only chooses the fields.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// Validity of what Init and Add issue by default.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 2 * 365 * 24 * time.Hour
)

// CA is a certificate authority: its certificate and signing key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate, for a trust pool or a ca_file.
	PEM []byte
}

// NewCA makes a self-signed CA named name (ECDSA P-256), valid from an
// hour ago (clock skew) for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"haven"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, PEM: pemCert(der)}, nil
}

// LoadCA reads a CA written by WriteFiles.
func LoadCA(certFile, keyFile string) (*CA, error) {
	cpem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read the CA certificate: %w", err)
	}
	cert, err := parseCert(cpem)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", certFile, err)
	}
	kpem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read the CA key: %w (`haven certs add` needs the CA's key, kept where `haven certs init` wrote it)", err)
	}
	b, _ := pem.Decode(kpem)
	if b == nil {
		return nil, fmt.Errorf("CA key %s holds no PEM block", keyFile)
	}
	key, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", keyFile, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("CA key %s does not belong to the CA certificate %s", keyFile, certFile)
	}
	return &CA{Cert: cert, Key: key, PEM: cpem}, nil
}

// WriteFiles writes the CA certificate (0644) and its key (0600).
func (ca *CA) WriteFiles(certFile, keyFile string) error {
	kder, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if err := os.WriteFile(certFile, ca.PEM, 0o644); err != nil {
		return err
	}
	return writeKey(keyFile, kder)
}

// Pool is a trust pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueOptions describe one certificate.
type IssueOptions struct {
	Name  string   // common name: the node's name, or "operator"
	Hosts []string // IP addresses and DNS names it answers for (server)
	// NotBefore and NotAfter default to an hour ago and CertValidity from now.
	NotBefore, NotAfter time.Time
}

// IssuePEM signs a certificate usable both as a TLS server and as a TLS
// client (agents are both to each other), and returns it and its key as PEM.
func (ca *CA) IssuePEM(o IssueOptions) (certPEM, keyPEM []byte, serialNo *big.Int, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("key: %w", err)
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(CertValidity)
	}
	if o.NotAfter.After(ca.Cert.NotAfter) {
		o.NotAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.Name, Organization: []string{"haven"}},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certificate for %s: %w", o.Name, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("key for %s: %w", o.Name, err)
	}
	return pemCert(der), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), tmpl.SerialNumber, nil
}

// IssueFiles writes a certificate (0644) and its key (0600).
func (ca *CA) IssueFiles(certFile, keyFile string, o IssueOptions) (*big.Int, error) {
	c, k, sn, err := ca.IssuePEM(o)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, c, 0o644); err != nil {
		return nil, err
	}
	b, _ := pem.Decode(k)
	if err := writeKey(keyFile, b.Bytes); err != nil {
		return nil, err
	}
	return sn, nil
}

// Issue writes a certificate for hosts (IP addresses or DNS names; the
// first is its name) and its key, and returns its serial number, by which
// a client can tell one issued certificate from another. It is the short
// form tests use.
func (ca *CA) Issue(certFile, keyFile string, hosts ...string) (*big.Int, error) {
	name := "test"
	if len(hosts) > 0 {
		name = hosts[0]
	}
	return ca.IssueFiles(certFile, keyFile, IssueOptions{Name: name, Hosts: hosts})
}

// writeKey writes a private key readable by its owner only, replacing a
// file that may be there with other modes.
func writeKey(path string, der []byte) error {
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// parseCert parses the first certificate of a PEM file.
func parseCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM certificate in it")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n.Add(n, big.NewInt(1))
}
