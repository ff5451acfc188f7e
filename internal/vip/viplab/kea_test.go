package viplab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/netlab"
	"github.com/haven-ha/haven/internal/syncbuf"
)

// dhcpEvent is one line udhcpc's script logged.
type dhcpEvent struct {
	at       time.Time
	kind     string // bound, renew, deconfig, nak, leasefail
	ip       string
	serverID string
}

func readDHCPLog(t *testing.T, path string) []dhcpEvent {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var evs []dhcpEvent
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ns int64
		var e dhcpEvent
		if n, _ := fmt.Sscanf(line, "%d %s ip=%s serverid=%s", &ns, &e.kind, &e.ip, &e.serverID); n >= 2 {
			e.at = time.Unix(0, ns)
			evs = append(evs, e)
		}
	}
	return evs
}

// TestKeaDHCPFollowsVIP runs Kea DHCPv4 under haven on two nodes (a
// witness makes the third etcd vote) with standby: cold and a lease file
// both nodes reach (memfile on a shared folder), the VIP as the server
// identifier. busybox udhcpc in the client namespace gets a lease and
// renews it (unicast to the VIP); the active's Kea crashes; the client's
// next renewals reach the other node's Kea through the VIP and keep the
// same address.
func TestKeaDHCPFollowsVIP(t *testing.T) {
	for _, bin := range []string{"kea-dhcp4", "udhcpc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (apt-get install kea-dhcp4-server udhcpc; ./scripts/test installs them)", bin)
		}
	}
	var keaConf string
	c := newClusterWith(t, clusterOpts{
		witness: true,
		env: func(c *cluster, n *node) string {
			dir := filepath.Join(c.dir, "kea-"+n.name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("KEA_PIDFILE_DIR: %q, KEA_LOCKFILE_DIR: %q", dir, dir)
		},
		service: func(c *cluster) string {
			shared := filepath.Join(c.dir, "shared") // a folder both nodes reach
			if err := os.MkdirAll(shared, 0o755); err != nil {
				t.Fatal(err)
			}
			vip := c.vip.Addr().String()
			subnet := c.vip.Masked().String()
			base := strings.TrimSuffix(vip, ".100")
			keaConf = filepath.Join(c.dir, "kea-dhcp4.conf")
			conf := fmt.Sprintf(`{"Dhcp4": {
  "interfaces-config": {"interfaces": ["eth1"], "dhcp-socket-type": "raw"},
  "lease-database": {"type": "memfile", "name": %q, "lfc-interval": 0},
  "valid-lifetime": 6, "renew-timer": 2, "rebind-timer": 4,
  "subnet4": [{"id": 1, "subnet": %q, "pools": [{"pool": "%s.150 - %s.199"}],
    "option-data": [{"name": "dhcp-server-identifier", "data": %q}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}]
}}
`, filepath.Join(shared, "kea-leases4.csv"), subnet, base, base, vip)
			if err := os.WriteFile(keaConf, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("service:\n  command: [kea-dhcp4, -c, %q]\n  standby: cold\n  stop_grace: 2s\nhooks: {promote_backoff: 1s}\n", keaConf)
		},
	})
	a := c.waitActive(60 * time.Second)
	if out, err := netlab.Command(a.ns, "kea-dhcp4", "-t", keaConf).CombinedOutput(); err != nil {
		t.Fatalf("kea-dhcp4 -t: %v\n%s", err, out)
	}

	logPath := filepath.Join(c.dir, "udhcpc.log")
	script := filepath.Join(c.dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
echo "$(date +%s%N) $1 ip=${ip:-none} serverid=${serverid:-none}" >> `+logPath+`
case "$1" in bound|renew) ip addr replace "$ip/24" dev "$interface" ;; esac
exit 0
`), 0o755); err != nil {
		t.Fatal(err)
	}
	udhcpc := netlab.Command(c.client, "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "30", "-T", "1", "-A", "1")
	out := &syncbuf.Buffer{}
	udhcpc.Stdout, udhcpc.Stderr = out, out
	if err := udhcpc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = udhcpc.Process.Signal(syscall.SIGTERM)
		_ = udhcpc.Wait()
		if t.Failed() {
			t.Logf("---- udhcpc ----\n%s", out.String())
		}
	})
	vip := c.vip.Addr().String()
	var bound dhcpEvent
	waitFor(t, 20*time.Second, "a lease from the VIP", func() bool {
		for _, e := range readDHCPLog(t, logPath) {
			if e.kind == "bound" && e.serverID == vip {
				bound = e
				return true
			}
		}
		return false
	})
	renewedAfter := func(after time.Time) (dhcpEvent, bool) {
		for _, e := range readDHCPLog(t, logPath) {
			if e.kind == "renew" && e.at.After(after) && e.serverID == vip {
				return e, true
			}
		}
		return dhcpEvent{}, false
	}
	// renew asks udhcpc to renew now (SIGUSR1: a unicast request to the
	// server identifier, the VIP) and waits for the ACK, asking again
	// every 2 s (busybox renews by itself only every 15 s or so).
	renew := func(after time.Time, what string) dhcpEvent {
		var e dhcpEvent
		asked := time.Time{}
		waitFor(t, 20*time.Second, what, func() bool {
			var ok bool
			if e, ok = renewedAfter(after); ok {
				return true
			}
			if time.Since(asked) > 2*time.Second {
				_ = udhcpc.Process.Signal(syscall.SIGUSR1)
				asked = time.Now()
			}
			return false
		})
		return e
	}
	renew(bound.at, "a renewal through the VIP from "+a.name)
	t.Logf("lease %s from %s (server id %s), renewed through %s", bound.ip, a.name, vip, a.name)

	// Kea crashes on the active: the other node starts its Kea, takes the
	// VIP, and the client's renewals go on against the same lease file.
	st, err := c.status(a)
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for _, v := range st.Nodes {
		if v.Name == a.name {
			pid = v.ServicePID
		}
	}
	if pid == 0 {
		t.Fatalf("no Kea pid on %s", a.name)
	}
	fault := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b := c.waitActive(30*time.Second, a)
	moved := time.Now() // b serves and holds the VIP; a's Kea is dead
	renewed := renew(moved, "a renewal through the VIP after the failover to "+b.name)
	for _, e := range readDHCPLog(t, logPath) {
		if e.at.After(fault) && (e.kind == "deconfig" || e.kind == "nak" || e.kind == "leasefail") {
			t.Fatalf("the client saw %s after the failover: %+v", e.kind, e)
		}
	}
	for _, e := range readDHCPLog(t, logPath) {
		t.Logf("client: %+6.3fs %s %s server %s", e.at.Sub(fault).Seconds(), e.kind, e.ip, e.serverID)
	}
	if renewed.ip != bound.ip {
		t.Fatalf("the lease changed across the failover: %s, then %s", bound.ip, renewed.ip)
	}
	t.Logf("Kea on %s crashed; %s took over; the client renewed %s through the VIP %s after the crash (no NAK, no lost lease)", a.name, b.name, renewed.ip, renewed.at.Sub(fault).Round(time.Millisecond))
}
