#!/usr/bin/env bash
# Redis Sentinel's failover time on the processes of examples/redis, for
# the side-by-side in examples/redis/README.md: a master and a replica
# (redis-server from Debian), three sentinels (quorum 2), kill -9 of the
# master, and the time until the replica is a master. Loopback only; ports
# from $BASE (default 26400). Usage: bench/redis-sentinel.sh [down-after-ms]
set -euo pipefail
DOWN=${1:-1000}
BASE=${BASE:-26400}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
M=$((BASE + 1)) R=$((BASE + 2))
redis-server --port $M --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$dir" >"$dir/m.log" 2>&1 & pids+=($!); disown
redis-server --port $R --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$dir" --replicaof 127.0.0.1 $M >"$dir/r.log" 2>&1 & pids+=($!); disown
for i in 1 2 3; do
	cat >"$dir/s$i.conf" <<CONF
port $((BASE + 10 + i))
bind 127.0.0.1
sentinel monitor m 127.0.0.1 $M 2
sentinel down-after-milliseconds m $DOWN
sentinel failover-timeout m 10000
sentinel parallel-syncs m 1
CONF
	redis-server "$dir/s$i.conf" --sentinel >"$dir/s$i.log" 2>&1 & pids+=($!); disown
done
# Wait until the replica is in sync and every sentinel knows the others.
for _ in $(seq 100); do
	up=$( (redis-cli -p $R info replication 2>/dev/null || true) | tr -d '\r' | grep -c master_link_status:up || true)
	known=$( (redis-cli -p $((BASE + 11)) sentinel master m 2>/dev/null || true) | tr -d '\r' | grep -A1 -x num-other-sentinels | tail -1 || true)
	[ "$up" = 1 ] && [ "$known" = 2 ] && break
	sleep 0.1
done
redis-cli -p $M set k v >/dev/null
start=$(date +%s%N)
kill -9 "${pids[0]}"
for _ in $(seq $((DOWN / 10 + 2000))); do
	role=$(redis-cli -p $R role 2>/dev/null | head -1 || true)
	[ "$role" = master ] && break
	sleep 0.01
done
end=$(date +%s%N)
echo "sentinel (down-after-milliseconds $DOWN): replica promoted $(((end - start) / 1000000)) ms after kill -9 of the master (role now: $role)"
