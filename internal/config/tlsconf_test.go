package config

import (
	"strings"
	"testing"
)

const tlsNodes = "nodes:\n  - {name: a, api: 127.0.0.1:7001, peer: 127.0.0.1:7101, client: 127.0.0.1:7201}\n"

func TestTLSSection(t *testing.T) {
	c, err := Parse("/etc/haven/haven.yaml", []byte("cluster: x\ndata_dir: /d\ntls: {ca_file: certs/ca.crt, cert_file: \"certs/${NODE}.crt\", key_file: \"/k/${NODE}.key\"}\n"+tlsNodes))
	if err != nil {
		t.Fatal(err)
	}
	want := TLSFiles{CA: "/etc/haven/certs/ca.crt", Cert: "/etc/haven/certs/a.crt", Key: "/k/a.key"}
	if got := c.TLS.For("a"); got != want || !c.TLS.Enabled() {
		t.Fatalf("For(a) = %+v, want %+v", got, want)
	}
	if err := c.CheckSecure(); err != nil || c.InsecureWarning() != "" || c.APIURL("h:1") != "https://h:1" {
		t.Fatalf("a config with tls: %v %q %s", err, c.InsecureWarning(), c.APIURL("h:1"))
	}
	if v := c.Vars(c.Nodes[0]); v["HAVEN_TLS_CERT"] != "/etc/haven/certs/a.crt" {
		t.Errorf("the service's variables lack the TLS files: %v", v)
	}

	c, err = Parse("h.yaml", []byte("cluster: x\ndata_dir: /d\n"+tlsNodes))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSecure(); err == nil || !strings.Contains(err.Error(), "insecure: true") {
		t.Fatalf("no tls and no insecure: %v", err)
	}
	c, err = Parse("h.yaml", []byte("cluster: x\ndata_dir: /d\ninsecure: true\n"+tlsNodes))
	if err != nil {
		t.Fatal(err)
	}
	if c.CheckSecure() != nil || !strings.Contains(c.InsecureWarning(), "move the active role") || c.APIURL("h:1") != "http://h:1" {
		t.Fatalf("insecure: %v %q", c.CheckSecure(), c.InsecureWarning())
	}
}

func TestTLSSectionErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"no key", "tls: {ca_file: a, cert_file: b}\n", "tls.key_file: missing"},
		{"empty", "tls: {ca_file: \"\", cert_file: b, key_file: c}\n", "tls.ca_file: is empty"},
		{"unknown key", "tls: {ca_file: a, cert_file: b, key_file: c, ca: d}\n", "tls"},
		{"both", "insecure: true\ntls: {ca_file: a, cert_file: b, key_file: c}\n", "contradict"},
		{"bad lb-check address", "insecure: true\napi: {lb_check_listen: nonsense}\n", "api.lb_check_listen"},
	} {
		_, err := Parse("h.yaml", []byte("cluster: x\ndata_dir: /d\n"+tc.yaml+tlsNodes))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
