// Command memberidle runs one embedded etcd member exactly as a haven
// agent starts it (etcdstore.StartMember, the same config), and nothing
// else: no agent, no client, no service. bench/etcd-idle.sh starts three
// to measure what the embedded member alone costs when idle, the floor
// under an embedded agent's idle cost (issue 20).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/haven-ha/haven/internal/store/etcdstore"
)

func main() {
	name := flag.String("name", "s1", "member name")
	dir := flag.String("dir", "", "data directory")
	peer := flag.String("peer", "", "peer host:port")
	client := flag.String("client", "", "client host:port")
	cluster := flag.String("cluster", "", "name=peer host:port, comma-separated, every member")
	hb := flag.Duration("heartbeat", 50*time.Millisecond, "raft heartbeat (etcd_heartbeat)")
	el := flag.Duration("election", 500*time.Millisecond, "raft election timeout (etcd_election)")
	ca := flag.String("ca", "", "CA file: mutual TLS on both ports, as haven's members")
	cert := flag.String("cert", "", "certificate file")
	key := flag.String("key", "", "key file")
	flag.Parse()
	mc := etcdstore.MemberConfig{Name: *name, DataDir: *dir, Peer: *peer, Client: *client, Cluster: map[string]string{},
		Token: "floor", Heartbeat: *hb, Election: *el, LogFile: *dir + ".log",
		TLS: etcdstore.TLSFiles{CAFile: *ca, CertFile: *cert, KeyFile: *key}}
	for _, p := range strings.Split(*cluster, ",") {
		n, a, ok := strings.Cut(p, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "memberidle: -cluster %q: want name=host:port,...\n", *cluster)
			os.Exit(2)
		}
		mc.Cluster[n] = a
	}
	m, err := etcdstore.StartMember(mc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "memberidle:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := m.Ready(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "memberidle:", err)
	} else {
		fmt.Println("ready: joined a quorum")
	}
	<-ctx.Done()
	m.Close()
}
