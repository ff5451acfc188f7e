#!/usr/bin/env bash
# haven proxy vs HAProxy, side by side in one run, on loopback:
#   1. L7 keep-alive: wrk -t2 -c64 -d10s --latency on a tiny response (req/s, p99)
#   2. L4 (TCP mode): the same small requests, and 1 MiB responses (throughput)
#   3. failover under load: errors a client sees while the active's service
#      is killed with -9 (haven proxy vs HAProxy checking every node's
#      /lb-check at the same interval as haven's probes)
# Installs haproxy and wrk from Debian if missing.
# Usage: bench/proxy.sh [DURATION] [ROUNDS]   (defaults 10s and 3)
# Each throughput test alternates HAProxy and haven ROUNDS times; the summary
# gives every round's ratio and their median (these machines are shared, so
# single figures drift by ±20%).
# (HAVEN_BIN=path uses a built binary instead of building this tree.)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-10s}
ROUNDS=${2:-3}
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

if ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null; then
  echo "== installing haproxy and wrk"
  apt-get update -qq && apt-get install -y -qq haproxy wrk >/dev/null
fi

W=$(mktemp -d /tmp/haven-bench-proxy.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
bg() { "$@" >>"$W/$(basename "$1").log" 2>&1 & PIDS+=($!); }
waitport() { for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }
waitok() { for _ in $(seq 1 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' -m1 "$1")" = 200 ] && return 0; sleep 0.1; done; echo "$1 never answered 200"; exit 1; }

if [ -n "${HAVEN_BIN:-}" ]; then cp "$HAVEN_BIN" "$W/haven"; else go build -o "$W/haven" ./cmd/haven; fi
H="$W/haven"
echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1 and 2: throughput against one fast backend -------------------------
BE=19080
bg "$H" bench-backend --listen 127.0.0.1:$BE
cat >"$W/haproxy.cfg" <<CFG
global
  maxconn 4000
  nbthread 2
defaults
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend l7
  mode http
  option http-keep-alive
  bind 127.0.0.1:19081
  default_backend l7
backend l7
  mode http
  server s1 127.0.0.1:$BE
frontend l4
  mode tcp
  bind 127.0.0.1:19082
  default_backend l4
backend l4
  mode tcp
  server s1 127.0.0.1:$BE
CFG
bg haproxy -db -f "$W/haproxy.cfg"

# A one-node haven cluster whose active node's backend is the fast backend
# (no service command, no checks: the node is active once elected).
cat >"$W/one.yaml" <<CFG
cluster: bench
data_dir: $W/data
timing: lan
log: {level: warn}
nodes:
  - {name: n1, api: 127.0.0.1:19101, peer: 127.0.0.1:19102, client: 127.0.0.1:19103, backend: 127.0.0.1:$BE}
CFG
# Mutual TLS between the parts, as haven runs by default (docs/security.md).
"$H" certs init --config "$W/one.yaml" --out "$W/certs1" >/dev/null
echo "tls: {ca_file: $W/certs1/ca.crt, cert_file: \"$W/certs1/\${NODE}.crt\", key_file: \"$W/certs1/\${NODE}.key\"}" >>"$W/one.yaml"
{ cat "$W/one.yaml"; echo "proxy: {listen: 127.0.0.1:19083}"; } >"$W/l7.yaml"
{ cat "$W/one.yaml"; echo "proxy: {listen: 127.0.0.1:19084, mode: tcp}"; } >"$W/l4.yaml"
bg "$H" agent --config "$W/one.yaml" --node n1
bg "$H" proxy --config "$W/l7.yaml"
cp "$H" "$W/haven-l4"; bg "$W/haven-l4" proxy --config "$W/l4.yaml"
waitport $BE; waitport 19081; waitport 19082
waitok http://127.0.0.1:19083/; waitok http://127.0.0.1:19084/

run() { # name url [wrk args...]
  local name=$1 url=$2; shift 2
  wrk -t2 -c64 -d"$D" --latency "$@" "$url" >"$W/wrk-$name.txt" 2>&1 # a later -c wins
  local rps p99 tr
  rps=$(awk '/Requests\/sec/{print $2}' "$W/wrk-$name.txt")
  p99=$(awk '$1=="99%"{print $2}' "$W/wrk-$name.txt")
  tr=$(awk '/Transfer\/sec/{print $2}' "$W/wrk-$name.txt")
  printf "%-22s %12s req/s   p99 %8s   %10s/s\n" "$name" "$rps" "$p99" "$tr"
  echo "$name $rps $p99 $tr" >>"$W/results.txt"
}
echo; echo "== L7 keep-alive, tiny response: wrk -t2 -c64 -d$D --latency (alternating, $ROUNDS rounds)"
for i in $(seq 1 "$ROUNDS"); do
  run "haproxy-l7-$i" http://127.0.0.1:19081/
  run "haven-l7-$i" http://127.0.0.1:19083/
done
echo; echo "== L4 (TCP mode), tiny response over kept connections"
for i in $(seq 1 "$ROUNDS"); do
  run "haproxy-l4-$i" http://127.0.0.1:19082/
  run "haven-l4-$i" http://127.0.0.1:19084/
done
echo; echo "== L4 (TCP mode), 1 MiB responses: wrk -t2 -c8"
for i in $(seq 1 "$ROUNDS"); do
  run "haproxy-l4big-$i" "http://127.0.0.1:19082/bytes?n=1048576" -c8
  run "haven-l4big-$i" "http://127.0.0.1:19084/bytes?n=1048576" -c8
done
cleanup; PIDS=()

echo; echo "== summary: haven / HAProxy, per round and median"
python3 - "$W/results.txt" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, rps, p99, tr = line.split()
    rows[name] = (rps, p99, tr)
def num(v):
    units = {"us": 1e-3, "ms": 1, "s": 1e3, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    for u in sorted(units, key=len, reverse=True):
        if v.endswith(u):
            return float(v[:-len(u)]) * units[u]
    return float(v)
def line(label, test, col, target):
    ratios = []
    i = 1
    while f"haproxy-{test}-{i}" in rows and f"haven-{test}-{i}" in rows:
        ratios.append(num(rows[f"haven-{test}-{i}"][col]) / num(rows[f"haproxy-{test}-{i}"][col]))
        i += 1
    if ratios:
        print(f"{label:<24} median {statistics.median(ratios):.2f}   rounds {' '.join(f'{r:.2f}' for r in ratios)}   target {target}")
line("L7 req/s", "l7", 0, ">= 0.6")
line("L7 p99 latency", "l7", 1, "<= 2")
line("L4 tiny req/s", "l4", 0, ">= 0.9")
line("L4 1 MiB throughput", "l4big", 2, ">= 0.9")
PY

# --- 3: failover under load ------------------------------------------------
echo; echo "== failover under load: 3-node cluster (lan preset), kill -9 of the active's service"
B=19200
cat >"$W/three.yaml" <<CFG
cluster: fo
data_dir: $W/fo
timing: lan
log: {level: info}
nodes:
CFG
for i in 1 2 3; do
  cat >>"$W/three.yaml" <<CFG
  - name: n$i
    api: 127.0.0.1:$((B+i))
    peer: 127.0.0.1:$((B+10+i))
    client: 127.0.0.1:$((B+20+i))
    backend: 127.0.0.1:$((B+30+i))
    env: {SERVICE_ADDR: "127.0.0.1:$((B+30+i))", LB_PORT: "$((B+50+i))"}
CFG
done
cat >>"$W/three.yaml" <<CFG
service:
  command: ["$H", "sample-service"]
  restart: always
  restart_delay: 100ms
checks:
  - name: sample
    http: {url: "http://\${SERVICE_ADDR}/healthz"}
    interval: 100ms
    timeout: 100ms
    rise: 1
    fall: 1
CFG
# TLS everywhere; HAProxy checks the agents' plain lb-check listeners.
"$H" certs init --config "$W/three.yaml" --out "$W/certs3" >/dev/null
cat >>"$W/three.yaml" <<CFG
tls: {ca_file: $W/certs3/ca.crt, cert_file: "$W/certs3/\${NODE}.crt", key_file: "$W/certs3/\${NODE}.key"}
api: {lb_check_listen: "127.0.0.1:\${LB_PORT}"}
CFG
{ cat "$W/three.yaml"; echo "proxy: {listen: 127.0.0.1:$((B+40)), probe_interval: 100ms}"; } >"$W/fo-proxy.yaml"
cat >"$W/haproxy-fo.cfg" <<CFG
global
  maxconn 4000
  nbthread 2
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout 503
frontend fo
  bind 127.0.0.1:$((B+41))
  default_backend fo
backend fo
  option httpchk GET /lb-check
  default-server inter 100ms fall 1 rise 1
  server n1 127.0.0.1:$((B+31)) check port $((B+51))
  server n2 127.0.0.1:$((B+32)) check port $((B+52))
  server n3 127.0.0.1:$((B+33)) check port $((B+53))
CFG
for i in 1 2 3; do bg "$H" agent --config "$W/three.yaml" --node n$i; done
bg "$H" proxy --config "$W/fo-proxy.yaml"
bg haproxy -db -f "$W/haproxy-fo.cfg"
waitok http://127.0.0.1:$((B+40))/
waitok http://127.0.0.1:$((B+41))/

active_pid() {
  "$H" status --config "$W/three.yaml" --json 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print([n["service_pid"] for n in d["nodes"] if n["role"]=="active"][0])'
}
settle() { # until every node is a healthy standby or the active again
  for _ in $(seq 1 200); do
    n=$("$H" status --config "$W/three.yaml" --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for n in d["nodes"] if n["healthy"] and n["role"] in ("active","standby")))' || echo 0)
    [ "$n" = 3 ] && return 0; sleep 0.1
  done
}
failover() { # name port
  local name=$1 port=$2 pid
  settle; waitok "http://127.0.0.1:$port/"
  pid=$(active_pid)
  wrk -t2 -c16 -d6s "http://127.0.0.1:$port/" >"$W/wrk-fo-$name.txt" 2>&1 &
  local w=$!
  sleep 2; kill -9 "$pid"; wait $w
  local non2xx sock total
  total=$(awk '/requests in/{print $1}' "$W/wrk-fo-$name.txt")
  non2xx=$(awk '/Non-2xx/{print $NF}' "$W/wrk-fo-$name.txt"); non2xx=${non2xx:-0}
  sock=$(awk '/Socket errors/{print}' "$W/wrk-fo-$name.txt"); sock=${sock:-none}
  printf "%-10s %8s requests, non-2xx %s, socket errors: %s\n" "$name" "$total" "$non2xx" "$sock"
}
for i in 1 2 3; do
  failover "haven-$i" $((B+40))
  failover "haproxy-$i" $((B+41))
done
echo; echo "raw wrk outputs: $W"
