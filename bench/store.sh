#!/usr/bin/env bash
# Store benchmark: three real agents with the lan preset on each backend
# (embedded etcd, external etcd, PostgreSQL, MariaDB): failover time after
# kill -9 of the active's agent (RUNS times), and the load the idle cluster
# puts on its store (requests per second per node over 10 s).
# Usage: bench/store.sh [RUNS]   (default 10). Needs the servers that
# ./scripts/test installs (postgresql, mariadb-server, etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(go version | cut -d' ' -f3)"
echo "servers: $(ls -d /usr/lib/postgresql/*/ | xargs -n1 basename | sed 's/^/postgresql /'), $(mariadbd --version | awk '{print $3}'), etcd $(etcd --version | awk '/etcd Version/{print $3}')"
go test ./internal/e2e/ -run '^$' -bench 'BenchmarkStoreFailover' -benchtime "${runs}x" -timeout 60m -v 2>&1 |
  grep -E '^(Benchmark|\s+store_test.go|ok|FAIL|---)'
go test ./internal/e2e/ -run '^$' -bench 'BenchmarkStoreIdleLoad' -benchtime 1x -timeout 30m -v 2>&1 |
  grep -E '^(Benchmark|\s+store_test.go|ok|FAIL|---)'
