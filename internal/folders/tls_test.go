package folders

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// tlsPair runs n1 (active) shipping srcDir to n2 over HTTPS with mutual
// TLS and no token, as agents do; n2 keeps it at dstDir. With insecure
// (newInsecurePair) it is HTTP with the API token instead, as agents with
// `insecure: true` do (chunks then carry their CRC-32C).
type tlsPair struct {
	a, b   *Service
	addr   string
	caDir  string
	cancel context.CancelFunc
	start  func() // makes n1 active
	wg     sync.WaitGroup
	// Chunks and whole files that reached n2 with and without a CRC-32C.
	withSum, withoutSum atomic.Int32
}

func newTLSPair(tb testing.TB, srcDir, dstDir string, quiet time.Duration, bandwidth int64) *tlsPair {
	tb.Helper()
	return newLinkPair(tb, srcDir, dstDir, quiet, bandwidth, false)
}

// newInsecurePair is newTLSPair without TLS: plain HTTP and the API token,
// the link of a cluster whose config says `insecure: true` (the
// benchmark's plain side, against an rsync daemon on plain TCP).
func newInsecurePair(tb testing.TB, srcDir, dstDir string, quiet time.Duration, bandwidth int64) *tlsPair {
	tb.Helper()
	return newLinkPair(tb, srcDir, dstDir, quiet, bandwidth, true)
}

func newLinkPair(tb testing.TB, srcDir, dstDir string, quiet time.Duration, bandwidth int64, insecure bool) *tlsPair {
	tb.Helper()
	p := &tlsPair{caDir: tb.TempDir()}
	ca, err := certs.NewCA("test", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	caFile := filepath.Join(p.caDir, "ca.crt")
	if err := ca.WriteFiles(caFile, filepath.Join(p.caDir, "ca.key")); err != nil {
		tb.Fatal(err)
	}
	src := map[string]*certs.Source{}
	for _, name := range []string{"n1", "n2", "operator"} {
		cf, kf := filepath.Join(p.caDir, name+".crt"), filepath.Join(p.caDir, name+".key")
		if _, err := ca.IssueFiles(cf, kf, certs.IssueOptions{Name: name, Hosts: []string{"127.0.0.1"}}); err != nil {
			tb.Fatal(err)
		}
		if src[name], err = certs.Load(certs.Files{CA: caFile, Cert: cf, Key: kf}); err != nil {
			tb.Fatal(err)
		}
	}
	var leader atomic.Pointer[ha.Leader]
	leader.Store(&ha.Leader{Epoch: 3}) // nobody active until start
	p.start = func() { leader.Store(&ha.Leader{Node: "n1", Epoch: 3}) }
	client := func(node string) *api.Client {
		if insecure {
			return api.NewClient(api.ClientOptions{Token: pairToken, Timeout: time.Minute})
		}
		return api.NewClient(api.ClientOptions{TLS: src[node].ClientConfig(), Timeout: time.Minute})
	}
	mk := func(node, dir string, peers []Peer) *Service {
		s, err := New(Options{
			Node: node, Folders: []Folder{{Name: "f", Path: dir, Quiet: quiet}}, Peers: peers, MaxLag: time.Minute, Bandwidth: bandwidth, ChunkSize: benchChunk(),
			Client: client(node),
			Clock:  clock.Real{},
			Role: func() (bool, ha.Epoch) {
				l := leader.Load()
				return l.Node == node, l.Epoch
			},
			Leader: func() ha.Leader { return *leader.Load() },
		})
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
	p.b = mk("n2", dstDir, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p.addr = ln.Addr().String()
	o := api.Options{}
	if insecure {
		o.Token = pairToken
	}
	h := api.FoldersHandler(p.b, []string{"n1", "n2"}, o)
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			if r.Header.Get(api.ChunkSumHeader) != "" {
				p.withSum.Add(1)
			} else {
				p.withoutSum.Add(1)
			}
		}
		h.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: count, ReadHeaderTimeout: 5 * time.Second}
	if insecure {
		go func() { _ = srv.Serve(ln) }()
	} else {
		go func() { _ = srv.Serve(tls.NewListener(ln, src["n2"].ServerConfig(false))) }()
	}
	p.a = mk("n1", srcDir, []Peer{{Name: "n2", Addr: p.addr}})
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	for _, s := range []*Service{p.a, p.b} {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); _ = s.Run(ctx) }()
	}
	tb.Cleanup(func() {
		cancel()
		p.wg.Wait()
		_ = srv.Close()
		p.a.Close()
		p.b.Close()
	})
	var he *ha.Error
	if insecure {
		// Without TLS, a call without the token is refused.
		nc := api.NewClient(api.ClientOptions{Timeout: 5 * time.Second})
		if _, err = nc.FolderManifest(context.Background(), p.addr, "f"); !errors.As(err, &he) || he.Kind != ha.KindUnauthorized {
			tb.Fatalf("a call without the token: %v, want Unauthorized", err)
		}
		return p
	}
	// An operator's certificate of the same CA cannot write folders.
	opc := api.NewClient(api.ClientOptions{TLS: src["operator"].ClientConfig(), Timeout: 5 * time.Second})
	_, err = opc.FolderBegin(context.Background(), p.addr, "f", api.FolderWrite{From: "n1", Epoch: 3, File: Entry{Path: "x", Size: 1}})
	if !errors.As(err, &he) || he.Kind != ha.KindForbidden {
		tb.Fatalf("a write with the operator's certificate: %v, want Forbidden", err)
	}
	// Nor can a client without a certificate or token.
	nc := api.NewClient(api.ClientOptions{TLS: &tls.Config{RootCAs: ca.Pool()}, Timeout: 5 * time.Second})
	if _, err = nc.FolderManifest(context.Background(), p.addr, "f"); !errors.As(err, &he) || he.Kind != ha.KindUnauthorized {
		tb.Fatalf("a call without a certificate: %v, want Unauthorized", err)
	}
	return p
}

func TestServiceOverMutualTLS(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("over mutual TLS"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A file of three chunks too: chunks go over TLS without a CRC-32C.
	big := bytes.Repeat([]byte("0123456789abcdef"), 2*api.MaxFolderChunk/16+1000)
	if err := os.WriteFile(filepath.Join(src, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	p := newTLSPair(t, src, dst, 50*time.Millisecond, 0)
	p.start()
	for _, name := range []string{"hello", "big"} {
		waitFor(t, name+" on n2", 60*time.Second, func() bool { return sameContent(filepath.Join(src, name), filepath.Join(dst, name)) })
	}
	if n, m := p.withoutSum.Load(), p.withSum.Load(); n < 2 || m != 0 {
		t.Errorf("over TLS, %d chunks went without a CRC-32C and %d with one; want every one without (TLS authenticates every record)", n, m)
	}
	// A sender of an older version sends a CRC-32C: it is still taken,
	// and checked.
	c := p.a.o.Client
	ctx := context.Background()
	data := []byte("from an older sender")
	sum := sha256.Sum256(data)
	w := api.FolderWrite{From: "n1", Epoch: 3, File: Entry{Path: "old", Size: int64(len(data)), MTime: 1, SHA256: hex.EncodeToString(sum[:])}}
	if _, err := c.FolderPut(ctx, p.addr, "f", w, "00000000", data); ha.KindOf(err) != ha.KindInvalid {
		t.Errorf("a whole file with a wrong CRC-32C over TLS: %v, want Invalid", err)
	}
	if _, err := c.FolderPut(ctx, p.addr, "f", w, ChunkSum(data), data); err != nil {
		t.Errorf("a whole file with its CRC-32C over TLS: %v", err)
	}
}
