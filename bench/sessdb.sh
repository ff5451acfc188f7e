#!/usr/bin/env bash
# etcd's database size under sustained session writes: a 3-agent cluster on
# embedded etcd (lan preset, active-passive, plaintext), redis-benchmark SET
# with a fixed key space, N writes, then a short idle tail; every STEP
# seconds, each member's etcd_mvcc_db_total_size_in_bytes (the file: what
# the quota is checked against) and _in_use_ (live pages), from etcd's own
# /metrics on the client port.
# Usage: bench/sessdb.sh [WRITES] [KEYS] [VALUE_BYTES]  (defaults 1000000 20000 1024)
# HAVEN_BIN=path: a built binary instead of this tree (to compare layouts).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
KEYS=${2:-20000}
D=${3:-1024}
STEP=${STEP:-3}
TAIL=${TAIL:-15}
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark: apt-get install redis-tools"; exit 1; }

W=$(mktemp -d /tmp/haven-bench-sessdb.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
BIN=${HAVEN_BIN:-$W/haven}
[ -n "${HAVEN_BIN:-}" ] || go build -o "$BIN" ./cmd/haven

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PW=bench-password-0123456789
cat >"$W/haven.yaml" <<EOF
cluster: bench
data_dir: $W/data
timing: lan
api: {token: bench-token-0123456789}
insecure: true
nodes:
EOF
declare -A SESS CLI
for i in 1 2 3; do
  SESS[n$i]=127.0.0.1:$(free_port); CLI[n$i]=127.0.0.1:$(free_port)
  echo "  - {name: n$i, api: 127.0.0.1:$(free_port), peer: 127.0.0.1:$(free_port), client: ${CLI[n$i]}, env: {S: \"${SESS[n$i]}\"}}" >>"$W/haven.yaml"
done
echo "sessions: {listen: \"\${S}\", password: $PW}" >>"$W/haven.yaml"
for i in 1 2 3; do
  "$BIN" agent --config "$W/haven.yaml" --node n$i >"$W/n$i.log" 2>&1 &
  PIDS+=($!)
done
ACTIVE=""
for _ in $(seq 1 300); do
  for i in 1 2 3; do
    h=${SESS[n$i]%:*}; p=${SESS[n$i]#*:}
    if [ "$(redis-cli -h "$h" -p "$p" -a $PW --no-auth-warning SET probe x 2>/dev/null)" = OK ]; then ACTIVE=n$i; break 2; fi
  done
  sleep 0.1
done
[ -n "$ACTIVE" ] || { echo "no active haven node"; tail -20 "$W"/n*.log; exit 1; }
HP=${SESS[$ACTIVE]#*:}
# The layout settles once every node's record lists it (a few seconds).
sleep 5
mb() { awk -v b="$1" 'BEGIN{printf "%.0f", b/1048576}'; }
sample() { # -> "n1 total/inuse n2 ... (MiB)"
  local out="" i m t u
  for i in 1 2 3; do
    m=$(curl -s --max-time 2 "http://${CLI[n$i]}/metrics" || true)
    t=$(awk '/^etcd_mvcc_db_total_size_in_bytes /{print $2}' <<<"$m")
    u=$(awk '/^etcd_mvcc_db_total_size_in_use_in_bytes /{print $2}' <<<"$m")
    out="$out n$i $(mb "${t:-0}")/$(mb "${u:-0}")"
  done
  echo "$out"
}
echo "binary $BIN; active $ACTIVE; $N SETs, $KEYS keys, $D-byte values, -P 16 -c 20; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "db MiB per member, total (the file) / in use:"
START=$(date +%s)
redis-benchmark -p "$HP" -a $PW -t set -n "$N" -r "$KEYS" -d "$D" -P 16 -c 20 -q >"$W/rb.out" 2>&1 &
RB=$!
PIDS+=($RB)
PEAK=0
while kill -0 $RB 2>/dev/null; do
  s=$(sample); echo "  t=$(( $(date +%s) - START ))s $s"
  sleep "$STEP"
done
END=$(date +%s)
echo "  writes done after $((END - START)) s: $(tr '\r' '\n' <"$W/rb.out" | grep -a 'requests per second' | tail -1)"
grep -aq 'requests per second' "$W/rb.out" || { echo "redis-benchmark failed:"; tr '\r' '\n' <"$W/rb.out" | tail -5; }
for _ in $(seq 1 $((TAIL / STEP))); do
  sleep "$STEP"; echo "  t=$(( $(date +%s) - START ))s (idle) $(sample)"
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg); compactions: $(grep -c 'compact' "$W/$ACTIVE.log" || true) log lines; history compaction warnings: $(grep -c "compacting etcd's history failed" "$W"/n*.log | tr '\n' ' ')"
echo "active's sessions line: $("$BIN" status --config "$W/haven.yaml" 2>/dev/null | grep -A3 'sessions' | grep "$ACTIVE on" || true)"
