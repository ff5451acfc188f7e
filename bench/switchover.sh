#!/usr/bin/env bash
# Planned switchover benchmark: RUNS switchovers (lan preset) under 8-client
# load through a real haven proxy; prints held traffic, the slowest client
# request per switchover, and client errors.
# Usage: bench/switchover.sh [RUNS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(go version | cut -d' ' -f3)"
go test ./internal/e2e/ -run '^$' -bench 'BenchmarkSwitchoverThroughProxy' -benchtime "${runs}x" -timeout 30m -v 2>&1 |
  grep -E '^(Benchmark|\s+switchover_bench_test.go|ok|FAIL|---)'
