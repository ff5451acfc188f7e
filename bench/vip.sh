#!/usr/bin/env bash
# Virtual IP: haven vs keepalived, side by side in one run, in network
# namespaces (three nodes with a cluster and a client network, a client
# namespace that pings and GETs the VIP every 20 ms). For each system:
#   node loss     both links of the holder cut: RTO until the client is
#                 answered (ping and GET) by another node through the VIP
#                 (haven: cut once etcd leadership has left the holder,
#                 plus 1 s, as bench/failover.sh and haven drill do)
#   service loss  SIGKILL of the holder's service
#   partition     the holder's cluster link cut for 8 s (clients still reach
#                 every node): how many nodes held the VIP at once, how long
# haven runs with the lan and lan-fast presets (and, for node loss, says
# when another node first answered /lb-check 200); keepalived with
# VRRPv3, advert_int KEEPALIVED_ADVERT (default 0.1 s) over the cluster
# network, the VIP on the client network, busybox httpd as the service
# checked by a vrrp_script every second (the least keepalived 2.2 accepts).
# Needs root, keepalived and busybox (installed from Debian if missing).
# Usage: bench/vip.sh [RUNS]   (default 5 faults of each kind)
set -euo pipefail
cd "$(dirname "$0")/.."
export VIP_RUNS="${1:-5}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
if ! command -v keepalived >/dev/null || ! command -v busybox >/dev/null; then
  echo "== installing keepalived and busybox"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends keepalived busybox >/dev/null
fi
echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3), $(keepalived --version 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
go test ./internal/vip/viplab/ -run '^$' -bench 'BenchmarkVIP' -benchtime 1x -timeout 60m -v 2>&1 |
  grep -E '^(Benchmark|\s+bench_test.go:[0-9]+|ok|FAIL|---)'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
