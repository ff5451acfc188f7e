#!/usr/bin/env bash
# The floor under an embedded agent's idle cost: three etcd members on
# loopback, idle, no client at all, with the lan preset's raft timings
# (heartbeat 50 ms, election 500 ms) and mutual TLS between peers, as
# haven's embedded members run. Either haven's own embedded member alone
# (bench/memberidle: etcdstore.StartMember, the agent's config, GOGC=50 as
# the agent; the default) or Debian's etcd-server (KIND=debian). After a
# 10 s settle it prints each member's own CPU (utime+stime from /proc) over
# WINDOW seconds and its wake-ups (context switches of all its threads per
# second), measured as bench/demo-idle.sh measures an agent, then stops
# them and removes everything it made (issue 20, docs/benchmarks.md).
# Usage: bench/etcd-idle.sh [WINDOW [HEARTBEAT_MS [ELECTION_MS]]]   (defaults 20 50 500)
#        KIND=debian bench/etcd-idle.sh ...   (Debian's etcd instead)
#        TLS=0 bench/etcd-idle.sh ...         (plain http)
set -euo pipefail
cd "$(dirname "$0")/.."
w=${1:-20} hb=${2:-50} el=${3:-500} kind=${KIND:-embedded}
work=$(mktemp -d /tmp/haven-etcd-idle.XXXXXX)
pids=()
stop() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null; rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM
base=29300 scheme=https
go build -o "$work/haven" ./cmd/haven
[[ "$kind" == debian ]] || go build -o "$work/memberidle" ./bench/memberidle
if [[ "${TLS:-1}" == 0 ]]; then scheme=http; else
  # haven's own certificates: a CA and one per node, as the agents use.
  printf 'cluster: floor\ndata_dir: %s/unused\nnodes:\n  - {name: s1, api: 127.0.0.1:1}\n  - {name: s2, api: 127.0.0.1:2}\n  - {name: s3, api: 127.0.0.1:3}\nstore: {backend: etcd, endpoints: [127.0.0.1:4]}\n' "$work" >"$work/h.yaml"
  "$work/haven" certs init --config "$work/h.yaml" --out "$work/certs" >/dev/null
fi
cluster="" hcluster=""
for m in 1 2 3; do
  cluster+="${cluster:+,}s$m=$scheme://127.0.0.1:$((base+2*m))"
  hcluster+="${hcluster:+,}s$m=127.0.0.1:$((base+2*m))"
done
for m in 1 2 3; do
  c="$work/certs/s$m"
  if [[ "$kind" == debian ]]; then
    command -v etcd >/dev/null || { echo "KIND=debian needs etcd (apt-get install etcd-server)" >&2; exit 2; }
    tlsflags=()
    [[ "$scheme" == https ]] && tlsflags=(--peer-client-cert-auth --peer-trusted-ca-file "$work/certs/ca.crt" --peer-cert-file "$c.crt" --peer-key-file "$c.key"
      --client-cert-auth --trusted-ca-file "$work/certs/ca.crt" --cert-file "$c.crt" --key-file "$c.key")
    etcd --name "s$m" --data-dir "$work/etcd$m" --heartbeat-interval "$hb" --election-timeout "$el" \
      --listen-client-urls "$scheme://127.0.0.1:$((base+2*m-1))" --advertise-client-urls "$scheme://127.0.0.1:$((base+2*m-1))" \
      --listen-peer-urls "$scheme://127.0.0.1:$((base+2*m))" --initial-advertise-peer-urls "$scheme://127.0.0.1:$((base+2*m))" \
      --initial-cluster "$cluster" --initial-cluster-token "floor$$" --log-level warn "${tlsflags[@]}" >"$work/etcd$m.log" 2>&1 &
  else
    tlsflags=()
    [[ "$scheme" == https ]] && tlsflags=(-ca "$work/certs/ca.crt" -cert "$c.crt" -key "$c.key")
    GOGC=50 "$work/memberidle" -name "s$m" -dir "$work/etcd$m" -peer "127.0.0.1:$((base+2*m))" -client "127.0.0.1:$((base+2*m-1))" \
      -cluster "$hcluster" -heartbeat "${hb}ms" -election "${el}ms" "${tlsflags[@]}" >"$work/etcd$m.out" 2>&1 &
  fi
  pids+=("$!")
done
# The cluster formed (asked once, before the settle, so no client runs
# while measuring).
for _ in $(seq 100); do
  if [[ "$kind" == debian ]]; then
    ca=(); [[ "$scheme" == https ]] && ca=(--cacert "$work/certs/ca.crt" --cert "$work/certs/s1.crt" --key "$work/certs/s1.key")
    ETCDCTL_API=3 etcdctl --endpoints "$scheme://127.0.0.1:$((base+1))" "${ca[@]}" endpoint health >/dev/null 2>&1 && break
  else
    (( $(cat "$work"/etcd*.out | grep -c '^ready') == 3 )) && break
  fi
  sleep 0.2
done
sleep 10
hz=$(getconf CLK_TCK)
csw() { cat /proc/$1/task/*/status 2>/dev/null | awk '/ctxt_switches/{n+=$2} END{print n+0}'; }
declare -A a c; for p in "${pids[@]}"; do a[$p]=$(awk '{print $14+$15}' /proc/$p/stat); c[$p]=$(csw $p); done
l0=$(cut -d' ' -f1 /proc/loadavg); sleep "$w"; l1=$(cut -d' ' -f1 /proc/loadavg)
out="" wk=""
for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || { echo "a member exited:" >&2; tail -5 "$work"/etcd*.log "$work"/etcd*.out 2>/dev/null >&2; exit 1; }
  d=$(( $(awk '{print $14+$15}' /proc/$p/stat) - a[$p] )); out="$out $(awk -v d=$d -v hz=$hz -v w=$w 'BEGIN{printf "%.2f", 100*d/hz/w}')"
  wk="$wk $(( ($(csw $p) - c[$p]) / w ))"
done
if [[ "$kind" == debian ]]; then what="Debian etcd $(etcd --version | awk '/etcd Version/{print $3}')"; else what="embedded member (etcd $(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3))"; fi
echo "$what x3 idle ($scheme, heartbeat ${hb}ms, election ${el}ms): members:$out (% of a core each over ${w}s, load $l0..$l1; wake-ups/s$wk)"
