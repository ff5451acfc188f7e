package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/ports"
)

// freeAddr is a free loopback address (package ports: not a closed :0
// listener's, which the kernel may hand to anyone next).
func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := ports.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestReadyNotification: a real one-node agent under a fake systemd
// ($NOTIFY_SOCKET) says READY=1 once it has joined the store and knows its
// role, then its role in STATUS=, and STOPPING=1 when it stops.
func TestReadyNotification(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	cfgPath := filepath.Join(dir, "haven.yaml")
	yaml := fmt.Sprintf(`cluster: ready
data_dir: %s
%s
api: {token: ready-test-token-0123456789}
nodes:
  - {name: n1, api: %s, peer: %s, client: %s}
service: {command: [sleep, "3600"], stop_grace: 1s}
tls: {ca_file: certs/ca.crt, cert_file: "certs/${NODE}.crt", key_file: "certs/${NODE}.key"}
`, filepath.Join(dir, "data"), harness.CITimings, freeAddr(t), freeAddr(t), freeAddr(t))
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.InitFor(filepath.Join(dir, "certs"), cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunNode(ctx, cfg, "n1", slog.New(slog.NewTextHandler(io.Discard, nil)), nil) }()
	defer func() {
		cancel()
		<-done
	}()
	var got []string
	want := []string{"READY=1", "STATUS=active", "STOPPING=1"}
	deadline := time.Now().Add(60 * time.Second)
	buf := make([]byte, 4096)
	for len(want) > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			select {
			case runErr := <-done:
				done <- runErr
				t.Fatalf("RunNode returned before %q: %v; got %q", want[0], runErr, got)
			default:
			}
			if time.Now().Before(deadline) {
				continue
			}
			t.Fatalf("waiting for %q: %v; got %q", want[0], err, got)
		}
		msg := string(buf[:n])
		got = append(got, msg)
		if strings.Contains(msg, "READY=1") && !strings.Contains(msg, "STATUS=") {
			t.Fatalf("READY=1 without the role: %q", msg)
		}
		for len(want) > 0 && strings.Contains(msg, want[0]) {
			want = want[1:]
			if len(want) == 1 {
				cancel() // now stop: STOPPING=1 must follow
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("RunNode: %v", err)
	}
	done <- nil
}
