package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files names one party's TLS files: the cluster CA to verify peers with,
// and its own certificate and key.
type Files struct {
	CA, Cert, Key string
}

// Check refuses files that are unsafe or do not fit together, with a
// message that says what to do: a key readable by others than its owner,
// a key that does not match its certificate, a certificate the CA did not
// sign, or one that has expired.
func Check(f Files) error {
	var errs []error
	st, err := os.Stat(f.Key)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("key %s: %w", f.Key, err))
	case st.Mode().Perm()&0o077 != 0:
		errs = append(errs, fmt.Errorf("key %s is readable by others (mode %04o); run chmod 600 %s (and chown it to the user haven runs as)", f.Key, st.Mode().Perm(), f.Key))
	}
	pool, err := LoadPool(f.CA)
	if err != nil {
		errs = append(errs, err)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("certificate %s and key %s: %w; give the key that was made with this certificate (haven certs add NODE makes a new pair)", f.Cert, f.Key, err))
		}
		return errors.Join(errs...)
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return errors.Join(append(errs, fmt.Errorf("certificate %s: %w", f.Cert, err))...)
		}
	}
	now := time.Now()
	if now.After(cert.NotAfter) {
		errs = append(errs, fmt.Errorf("certificate %s expired on %s; issue a new one (haven certs add %s) and send the agent SIGHUP", f.Cert, cert.NotAfter.Format(time.DateOnly), cert.Subject.CommonName))
	}
	if pool != nil {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil && now.Before(cert.NotAfter) {
			errs = append(errs, fmt.Errorf("certificate %s is not signed by the CA in %s: %w; issue it with this cluster's CA (haven certs add)", f.Cert, f.CA, err))
		}
	}
	return errors.Join(errs...)
}

// LoadPool reads a CA file into a trust pool.
func LoadPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// NotAfter is when the certificate in certFile expires.
func NotAfter(certFile string) (time.Time, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return time.Time{}, err
	}
	c, err := parseCert(data)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", certFile, err)
	}
	return c.NotAfter, nil
}

// Source holds one party's loaded TLS material and reloads it from its
// files on Reload (SIGHUP): new handshakes use the new certificate and CA,
// connections already open keep theirs.
type Source struct {
	files Files
	mu    sync.RWMutex
	cert  *tls.Certificate // nil: no certificate of its own (a CLI without one)
	pool  *x509.CertPool
}

// Load reads f. A Source with only a CA (empty Cert and Key) verifies
// servers but presents no certificate.
func Load(f Files) (*Source, error) {
	s := &Source{files: f}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again; on an error the old material stays.
func (s *Source) Reload() error {
	pool, err := LoadPool(s.files.CA)
	if err != nil {
		return err
	}
	var cert *tls.Certificate
	if s.files.Cert != "" {
		c, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
		if err != nil {
			return fmt.Errorf("certificate %s, key %s: %w", s.files.Cert, s.files.Key, err)
		}
		cert = &c
	}
	s.mu.Lock()
	s.cert, s.pool = cert, pool
	s.mu.Unlock()
	return nil
}

// Files are the files the source reads.
func (s *Source) Files() Files { return s.files }

// NotAfter is when the current certificate expires (zero without one).
func (s *Source) NotAfter() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cert == nil || s.cert.Leaf == nil {
		return time.Time{}
	}
	return s.cert.Leaf.NotAfter
}

func (s *Source) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cert, s.pool
}

// ServerConfig is for a listener. With requireClient every client must
// present a certificate the CA signed (mutual TLS); without, a client may
// present none, but one it presents must verify. Each handshake uses the
// material loaded last. It offers HTTP/1.1 only: the agent API and the
// dashboard behave as they did in plain HTTP (one connection per stream).
func (s *Source) ServerConfig(requireClient bool) *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if requireClient {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := s.current()
			c := &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: auth, ClientCAs: pool, NextProtos: []string{"http/1.1"}}
			if cert != nil {
				c.Certificates = []tls.Certificate{*cert}
			}
			return c, nil
		},
	}
}

// ClientConfig is for dialing a server of the cluster: it verifies the
// server against the CA and presents this party's certificate, if any.
// The CA is the one loaded when the config is built.
func (s *Source) ClientConfig() *tls.Config {
	_, pool := s.current()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := s.current()
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		},
	}
}

// ClientTLS is a client configuration from f: the CA, and the certificate
// when its files can be read (an operator's CLI may run without one and
// then relies on the API token).
func ClientTLS(f Files) (*tls.Config, error) {
	if _, err := os.Stat(f.Key); err != nil {
		f.Cert, f.Key = "", ""
	} else if _, err := os.Stat(f.Cert); err != nil {
		f.Cert, f.Key = "", ""
	}
	s, err := Load(f)
	if err != nil {
		return nil, err
	}
	return s.ClientConfig(), nil
}
