#!/usr/bin/env bash
# Failover benchmark: real agents on loopback with a timing preset (lan by
# default); RUNS faults of each kind, each timed from the fault to the first
# successful request to the new active's service. Prints p50/p99/max in ms.
# Usage: bench/failover.sh [RUNS [PRESET [BENCH]]]
#   (default 20 runs, lan, every BenchmarkFailover; e.g. 20 lan-fast AgentCrash)
# HAVEN_BENCH_TIMELINE=1.1s prints, for each run slower than that, the agents'
# log lines from the fault to the first success, timed from the fault.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
preset="${2:-lan}"
bench="BenchmarkFailover${3:-}"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(go version | cut -d' ' -f3); load: $(cut -d' ' -f1-3 /proc/loadavg); preset: $preset"
HAVEN_BENCH_TIMING="$preset" go test ./internal/e2e/ -run '^$' -bench "$bench" -benchtime "${runs}x" -timeout 60m -v 2>&1 |
  grep -E '^(Benchmark|\s+failover_bench_test.go|\s+[-+ ]*[0-9.]+ms n[0-9]|ok|FAIL|---)'
