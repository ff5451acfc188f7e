package etcdstore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/store/storetest"
)

// Members probes each member over one kept connection rather than a new
// one (a TLS handshake with TLS) per call; a member cut off on that
// connection is unhealthy within the probe's deadline, healthy again once
// reachable; and Close does not wait long on the connection to a member
// that is cut off.
func TestMembersKeepConnection(t *testing.T) {
	t.Parallel()
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd not found (Debian's etcd-server; scripts/test installs it): %v", err)
	}
	// The member advertises its client URL through a forwarder, which
	// Members' probes therefore use; the store itself dials it directly.
	client, peer := storetest.FreePort(t), storetest.FreePort(t)
	fw := storetest.Forward(t, fmt.Sprintf("127.0.0.1:%d", client))
	dir := t.TempDir()
	cmd := exec.Command(etcd, "--name", "m1", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--advertise-client-urls", "http://"+fw.Addr,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", fmt.Sprintf("m1=http://127.0.0.1:%d", peer),
		"--log-level", "warn")
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s, err := Dial("members", []string{fmt.Sprintf("127.0.0.1:%d", client)}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close()
		}
	})
	probe := func() (bool, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		ms, err := s.Members(ctx)
		if err != nil {
			return false, 0, err
		}
		if len(ms) != 1 {
			return false, 0, fmt.Errorf("members %+v, want one", ms)
		}
		return ms[0].Healthy, time.Since(start), nil
	}
	healthy := func() (bool, time.Duration) {
		t.Helper()
		ok, took, err := probe()
		if err != nil {
			t.Fatalf("Members: %v", err)
		}
		return ok, took
	}
	waitHealthy := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if ok, _, _ := probe(); ok {
				return
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
				t.Fatalf("member not healthy within 30 s %s; etcd's log:\n%s", what, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitHealthy("of its start")
	{
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ms, err := s.Members(ctx)
		cancel()
		if err != nil || len(ms) != 1 || ms[0].DBBytes <= 0 || ms[0].DBInUseBytes <= 0 {
			t.Fatalf("members %+v (%v): want the database's size and in-use size (Debian's etcd 3.4 reports no quota)", ms, err)
		}
	}
	first := fw.Accepted()
	const probes = 10
	for range probes {
		if ok, _ := healthy(); !ok {
			t.Fatal("member unhealthy on a kept connection")
		}
	}
	if n := fw.Accepted() - first; n > 0 {
		t.Fatalf("%d probes opened %d new connections to the member, want them on the kept one", probes, n)
	}

	fw.Cut()
	ok, took := healthy()
	if ok {
		t.Fatal("member healthy while cut off")
	}
	if took > 5*time.Second {
		t.Fatalf("probe of a cut-off member took %s, want about its 1 s deadline", took)
	}
	fw.Heal()
	waitHealthy("after the cut healed")

	fw.Cut()
	if ok, _ := healthy(); ok {
		t.Fatal("member healthy while cut off")
	}
	start := time.Now()
	closed = true
	_ = s.Close()
	d := time.Since(start)
	t.Logf("Close with the member cut off: %s", d)
	if d > 3*time.Second {
		t.Fatalf("Close took %s with the member cut off", d)
	}
	if _, err := s.members.status(context.Background(), "http://"+fw.Addr); err == nil {
		t.Fatal("probe after Close succeeded")
	}
}
