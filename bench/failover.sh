#!/usr/bin/env bash
# Failover benchmark: real agents on loopback with the lan preset; RUNS
# faults of each kind, each timed from the fault to the first successful
# request to the new active's service. Prints p50/p99/max in ms.
# Usage: bench/failover.sh [RUNS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(go version | cut -d' ' -f3)"
go test ./internal/e2e/ -run '^$' -bench 'BenchmarkFailover' -benchtime "${runs}x" -timeout 60m -v 2>&1 |
  grep -E '^(Benchmark|\s+failover_bench_test.go|ok|FAIL|---)'
