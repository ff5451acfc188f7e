#!/usr/bin/env bash
# Session store benchmark, side by side in one run, on loopback:
#   haven   the active of a 3-agent cluster (embedded etcd, lan preset): a SET is
#           acknowledged once a quorum of etcd members committed it
#   redis   a lone redis-server (no persistence, no replica): the speed ceiling
#   sync    redis-server with one replica, every SET followed by WAIT 1 0: the
#           write is on two nodes before the client hears back (the fair
#           comparison for haven's SET)
#   aof     a lone redis-server with appendonly yes, appendfsync always: a SET
#           is acknowledged once it is fsynced to its disk (one node)
# 1. redis-benchmark -t set,get -c 50 (with and without -P 16) on haven and redis
# 2. SET (+ WAIT 1 0 on sync) with bench/sessload, the same client for all three,
#    -c 50, with and without -P 16 (redis-benchmark cannot send SET+WAIT)
# 3. the etcd floor: bench/etcdfloor writes straight to the active's etcd member
#    (the same three members, under a prefix no agent watches), transactions as
#    the session store's group commit makes them; CPU per key of the three agents
# 4. memory of the active haven agent and of redis-server holding KEYS small keys
# Usage: bench/sessions.sh [REQUESTS] [KEYS]   (defaults 100000 and 200000)
# (HAVEN_BIN=path uses a built binary instead of building this tree.
#  STORE=postgres puts the cluster on a throwaway PostgreSQL server instead of
#  embedded etcd: fsync and synchronous_commit on, one server, no replica.)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
KEYS=${2:-200000}
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
for t in redis-server redis-benchmark redis-cli; do
  command -v $t >/dev/null || { echo "needs $t: apt-get install redis-server redis-tools"; exit 1; }
done

W=$(mktemp -d /tmp/haven-bench-sessions.XXXXXX)
PIDS=()
cleanup() {
  rc=$?
  if [ "$rc" != 0 ]; then
    echo "failed (exit $rc); the agents' last log lines:"
    for f in "$W"/n*.log; do [ -f "$f" ] && { echo "-- $f"; grep -v '^\s*$' "$f" | tail -8; }; done
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

BIN=${HAVEN_BIN:-$W/haven}
[ -n "${HAVEN_BIN:-}" ] || go build -o "$BIN" ./cmd/haven
go build -o "$W/sessload" ./bench/sessload
go build -o "$W/etcdfloor" ./bench/etcdfloor

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PW=bench-password-0123456789
STORE=${STORE:-embedded}
STORE_LINE=""
if [ "$STORE" = postgres ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PGPORT=$(free_port)
  chmod 755 "$W"; mkdir -p "$W/pg"; chown postgres "$W/pg"
  runpg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  runpg "$PGBIN/initdb" -D "$W/pg/data" -U haven --auth=trust -E UTF8 --locale=C >/dev/null
  runpg "$PGBIN/postgres" -D "$W/pg/data" -p "$PGPORT" -k "$W/pg" -c listen_addresses=127.0.0.1 -c max_connections=200 >"$W/pg/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break; sleep 0.1; done
  STORE_LINE="store: {backend: postgres, dsn: \"postgres://haven@127.0.0.1:$PGPORT/postgres?sslmode=disable\"}"
elif [ "$STORE" != embedded ]; then
  echo "STORE=$STORE: use embedded or postgres"; exit 2
fi
cat >"$W/haven.yaml" <<EOF
cluster: bench
data_dir: $W/data
timing: lan
api: {token: bench-token-0123456789}
insecure: true   # plaintext, like the Redis it is compared with
$STORE_LINE
nodes:
EOF
declare -A SESS API CLI
for i in 1 2 3; do
  API[n$i]=127.0.0.1:$(free_port); SESS[n$i]=127.0.0.1:$(free_port); CLI[n$i]=127.0.0.1:$(free_port)
  echo "  - {name: n$i, api: ${API[n$i]}, peer: 127.0.0.1:$(free_port), client: ${CLI[n$i]}, env: {S: \"${SESS[n$i]}\"}}" >>"$W/haven.yaml"
done
echo "sessions: {listen: \"\${S}\", password: $PW}" >>"$W/haven.yaml"
for i in 1 2 3; do
  "$BIN" agent --config "$W/haven.yaml" --node n$i >"$W/n$i.log" 2>&1 &
  PIDS+=($!)
done

R1=$(free_port); R2=$(free_port); R3=$(free_port); R4=$(free_port)
mkdir -p "$W/aof"
redis-server --port "$R4" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always --dir "$W/aof" >"$W/aof.log" 2>&1 & PIDS+=($!); AOF_PID=$!
redis-server --port "$R1" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" >"$W/redis.log" 2>&1 & PIDS+=($!)
redis-server --port "$R2" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" >"$W/primary.log" 2>&1 & PIDS+=($!); SYNC_PIDS=$!
redis-server --port "$R3" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" --replicaof 127.0.0.1 "$R2" >"$W/replica.log" 2>&1 & PIDS+=($!); SYNC_PIDS="$SYNC_PIDS $!"

# The active: the node whose session store takes writes.
ACTIVE=""
for _ in $(seq 1 300); do
  for i in 1 2 3; do
    h=${SESS[n$i]%:*}; p=${SESS[n$i]#*:}
    if [ "$(redis-cli -h "$h" -p "$p" -a $PW --no-auth-warning SET probe x 2>/dev/null)" = OK ]; then ACTIVE=n$i; break 2; fi
  done
  sleep 0.1
done
[ -n "$ACTIVE" ] || { echo "no active haven node; logs in $W"; tail -20 "$W"/n*.log; exit 1; }
for _ in $(seq 1 100); do
  [ "$(redis-cli -p "$R2" WAIT 1 100 2>/dev/null)" = 1 ] && break
  sleep 0.1
done
HP=${SESS[$ACTIVE]#*:}
AGENT_PID=$(pgrep -f "agent --config $W/haven.yaml --node $ACTIVE" | head -1)
AGENT_PIDS=$(pgrep -f "agent --config $W/haven.yaml" | tr '\n' ' ')
# CPU time (user+system, in clock ticks) of the processes given: each side's
# own work, which holds on a machine loaded by others, unlike the rates.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
HZ=$(getconf CLK_TCK)

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg) (shared with other work)"
echo "redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2); haven on $STORE, active $ACTIVE on port $HP; $N requests, 50 clients"
echo
echo "== 1. redis-benchmark -t set,get -c 50 (rps, p50 ms, p99 ms)"
rb() { # port password pipeline -> "set_rps set_p50 set_p99 get_rps get_p50 get_p99"
  local auth=(); [ -n "$2" ] && auth=(-a "$2")
  redis-benchmark -p "$1" "${auth[@]}" -t set,get -n "$N" -c 50 -P "$3" -r 100000 --csv 2>/dev/null |
    awk -F'","' 'NR>1 {printf "%s %s %s ", $2, $5, $7}'
}
declare -A RES
for P in 1 16; do
  RES[haven$P]=$(rb "$HP" "$PW" $P); RES[redis$P]=$(rb "$R1" "" $P)
  read -r hs hs50 hs99 hg hg50 hg99 <<<"${RES[haven$P]}"
  read -r rs rs50 rs99 rg rg50 rg99 <<<"${RES[redis$P]}"
  printf "  -P %-2s SET haven %8.0f (p50 %s, p99 %s)  redis %8.0f (p50 %s, p99 %s)  ratio %.2f\n" $P "$hs" "$hs50" "$hs99" "$rs" "$rs50" "$rs99" "$(echo "$hs / $rs" | bc -l)"
  printf "  -P %-2s GET haven %8.0f (p50 %s, p99 %s)  redis %8.0f (p50 %s, p99 %s)  ratio %.2f\n" $P "$hg" "$hg50" "$hg99" "$rg" "$rg50" "$rg99" "$(echo "$hg / $rg" | bc -l)"
done
echo
echo "== 2. SET with bench/sessload -c 50 (rps, p50 ms, p99 ms); sync = redis primary + replica, SET then WAIT 1 0;"
echo "   aof = lone redis, appendonly yes, appendfsync always; CPU per SET: all three agents (with their etcd"
echo "   members), primary + replica, the aof server"
for P in 1 16; do
  t0=$(ticks $AGENT_PIDS)
  read -r h h50 h99 <<<"$("$W/sessload" -addr "127.0.0.1:$HP" -a $PW -n "$N" -c 50 -P $P)"
  t1=$(ticks $AGENT_PIDS); u0=$(ticks $SYNC_PIDS)
  read -r s s50 s99 <<<"$("$W/sessload" -addr "127.0.0.1:$R2" -n "$N" -c 50 -P $P -wait)"
  u1=$(ticks $SYNC_PIDS); v0=$(ticks $AOF_PID)
  read -r a a50 a99 <<<"$("$W/sessload" -addr "127.0.0.1:$R4" -n "$N" -c 50 -P $P)"
  v1=$(ticks $AOF_PID)
  read -r r r50 r99 <<<"$("$W/sessload" -addr "127.0.0.1:$R1" -n "$N" -c 50 -P $P)"
  [ "$P" = 1 ] && SYNC1=$s
  printf "  -P %-2s haven %8.0f (p50 %s, p99 %s)  sync %8.0f (p50 %s, p99 %s)  aof %8.0f (p50 %s, p99 %s)  lone %8.0f (p50 %s, p99 %s)  haven/sync %.2f  haven/aof %.2f\n" \
    $P "$h" "$h50" "$h99" "$s" "$s50" "$s99" "$a" "$a50" "$a99" "$r" "$r50" "$r99" "$(echo "$h / $s" | bc -l)" "$(echo "$h / $a" | bc -l)"
  printf "        CPU per SET: haven %.0f us, sync %.0f us, aof %.0f us\n" \
    "$(echo "($t1-$t0)*1000000/$HZ/$N" | bc -l)" "$(echo "($u1-$u0)*1000000/$HZ/$N" | bc -l)" "$(echo "($v1-$v0)*1000000/$HZ/$N" | bc -l)"
done
if [ "$STORE" = embedded ]; then
  echo
  echo "== 3. the etcd floor: bench/etcdfloor straight to the active's etcd member (no agent in the path, no watcher),"
  echo "   transactions of B puts behind a compare, C in flight; keys/s, commit p50 ms, p99 ms; CPU per key of the three agents;"
  echo "   ratio to sync Redis without pipelining (section 2): what any session store writing each key to these members could reach at most"
  floor() { # label args...
    local label=$1; shift
    local t0 t1 f f50 f99
    t0=$(ticks $AGENT_PIDS)
    read -r f f50 f99 <<<"$("$W/etcdfloor" -endpoints "${CLI[$ACTIVE]}" -n "$N" "$@")"
    t1=$(ticks $AGENT_PIDS)
    printf "  %-44s %8.0f keys/s (commit p50 %s, p99 %s)  CPU per key %3.0f us  floor/sync %.2f\n" "$label" "$f" "$f50" "$f99" "$(echo "($t1-$t0)*1000000/$HZ/$N" | bc -l)" "$(echo "$f / $SYNC1" | bc -l)"
  }
  floor "B 38, C 1 (group commit of 50 clients)" -b 38 -c 1
  floor "B 128, C 4 (the largest batches, 4 in flight)" -b 128 -c 4
  floor "B 38, C 1, one etcd entry per batch" -b 38 -c 1 -pack
fi
echo
echo "== 4. memory with $KEYS keys of 32 bytes (key:NNNNNNNNNNNN)"
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
H0=$(rss "$AGENT_PID"); R0=$(redis-cli -p "$R1" INFO memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
"$W/sessload" -addr "127.0.0.1:$HP" -a $PW -n "$KEYS" -r "$KEYS" -c 20 -P 64 -d 32 >/dev/null
redis-cli -p "$R1" FLUSHALL >/dev/null
R0=$(redis-cli -p "$R1" INFO memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
"$W/sessload" -addr "127.0.0.1:$R1" -n "$KEYS" -r "$KEYS" -c 20 -P 64 -d 32 >/dev/null
H1=$(rss "$AGENT_PID"); R1M=$(redis-cli -p "$R1" INFO memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
HK=$(redis-cli -p "$HP" -a $PW --no-auth-warning DBSIZE)
printf "  haven active agent RSS %d MiB -> %d MiB (%s keys; $([ "$STORE" = embedded ] && echo "includes its etcd member" || echo "the agent only; the data is also in $STORE")): %.0f bytes/key, %.0f MiB per million\n" \
  $((H0/1024)) $((H1/1024)) "$HK" "$(echo "($H1-$H0)*1024/$KEYS" | bc -l)" "$(echo "($H1-$H0)*1024/$KEYS*1000000/1048576" | bc -l)"
printf "  redis used_memory: %.0f bytes/key, %.0f MiB per million\n" "$(echo "($R1M-$R0)/$KEYS" | bc -l)" "$(echo "($R1M-$R0)/$KEYS*1000000/1048576" | bc -l)"
