#!/usr/bin/env bash
# Scale benchmark: K two-node clusters (lan preset, the sample service, one
# HTTP check every 100 ms each) on ONE external etcd (Debian's etcd-server,
# one member), all on loopback. Measures: time for every cluster to elect,
# exactly one active per cluster, the idle CPU of the agents and of etcd
# (CPU time from /proc/PID/stat over a fixed window, so the figure is
# haven's own work even on a machine loaded by others), RSS per agent,
# etcd's database size, and the failover time of SAMPLE clusters (kill -9 of
# the active's agent, to the other node's promotion in its log) while all
# the others run. Every process it started is stopped on exit, also on
# Ctrl-C or an error.
# Usage: bench/scale.sh [K] [WINDOW_SECONDS] [SAMPLE]   (defaults 10 20 3)
#        STORE=etcd3 bench/scale.sh ...    (a 3-member etcd on loopback; the
#          agents' endpoints list all three)
#        STORE=postgres bench/scale.sh ... (one PostgreSQL from Debian's
#          postgresql, run as the postgres user in a throwaway directory)
#        LIGHT=1 bench/scale.sh ...   (agents without service or check: what
#          the store carries when the agents' own machines are elsewhere)
#        BATCH=N bench/scale.sh ...   (start N clusters at a time and wait
#          until they have elected before the next N: 200 agents started at
#          once on 2 cores do not all elect within 120 s)
#        EXTRA_YAML='lock_delay: off' bench/scale.sh ...  (added to every
#          cluster's config)
#        HAVEN_BIN=path/to/haven bench/scale.sh ...   (measure a given build)
#        BASE_BIN=path/to/old/haven bench/scale.sh ... (the same run measures
#          BASE_BIN first, then HAVEN_BIN or this tree, then keepalived's
#          idle CPU as the reference: a MASTER/BACKUP pair in two network
#          namespaces, advert_int 0.1 s, a vrrp_script every second; root)
set -euo pipefail
cd "$(dirname "$0")/.."
k="${1:-10}" window="${2:-20}" sample="${3:-3}"
if [[ -n "${BASE_BIN:-}" ]]; then
  # Side by side: the old build, then the new one, then keepalived.
  new="${HAVEN_BIN:-}"
  if [[ -z "$new" ]]; then
    new="$(mktemp /tmp/haven-scale-new.XXXXXX)"; trap 'rm -f "$new"' EXIT
    go build -o "$new" ./cmd/haven
  fi
  rc=0
  echo "=== before: $BASE_BIN"; BASE_BIN= HAVEN_BIN="$BASE_BIN" "$0" "$@" || rc=1
  echo "=== after: this tree"; BASE_BIN= HAVEN_BIN="$new" "$0" "$@" || rc=1
  echo "=== reference: keepalived"; BASE_BIN= KEEPALIVED_ONLY=1 "$0" "$@" || rc=1
  exit "$rc"
fi
(( k >= 1 && k <= 200 )) || { echo "K must be 1..200" >&2; exit 2; }
base=28000 # cluster i uses ports base+10*i+1..4; etcd base+1, base+2
work="$(mktemp -d /tmp/haven-scale.XXXXXX)"
pids=()
stop() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 100); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    (( alive )) || break; sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

hz=$(getconf CLK_TCK)
cputicks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
ms() { date +%s%3N; }
logms() { date -d "$1" +%s%3N; } # a log line's time= field

if [[ -n "${KEEPALIVED_ONLY:-}" ]]; then
  # keepalived's idle CPU as the reference: two nodes in two namespaces
  # joined by a veth, VRRPv3 adverts every 0.1 s, a check script every 1 s.
  command -v keepalived >/dev/null || apt-get install -y -qq --no-install-recommends keepalived >/dev/null
  tag="hsc$$"
  trap 'stop; ip netns del "${tag}a" 2>/dev/null; ip netns del "${tag}b" 2>/dev/null' EXIT
  ip netns add "${tag}a"; ip netns add "${tag}b"
  ip link add "${tag}x" type veth peer name "${tag}y"
  ip link set "${tag}x" netns "${tag}a"; ip link set "${tag}y" netns "${tag}b"
  ip -n "${tag}a" link set "${tag}x" name eth0; ip -n "${tag}b" link set "${tag}y" name eth0
  printf '#!/bin/sh\nexit 0\n' >"$work/check.sh"; chmod 755 "$work/check.sh"
  i=0
  for n in a b; do
    i=$((i+1))
    ip -n "$tag$n" link set lo up; ip -n "$tag$n" link set eth0 up
    ip -n "$tag$n" addr add "10.250.0.$i/24" dev eth0
    cat >"$work/ka-$n.conf" <<KA
global_defs {
  router_id $n
  vrrp_version 3
  enable_script_security
  script_user root
}
vrrp_script svc {
  script "$work/check.sh"
  interval 1
  timeout 1
}
vrrp_instance VI {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority $((160 - 40*i))
  advert_int 0.1
  virtual_ipaddress {
    10.250.0.100/24 dev eth0
  }
  track_script {
    svc
  }
}
KA
    chmod 644 "$work/ka-$n.conf"
    ip netns exec "$tag$n" keepalived -n -l -D -f "$work/ka-$n.conf" -p "$work/k-$n.pid" -r "$work/v-$n.pid" >"$work/ka-$n.log" 2>&1 &
    pids+=("$!")
  done
  sleep 5 # elect, settle
  kpids=()
  for n in a b; do
    for f in "$work/k-$n.pid" "$work/v-$n.pid"; do [[ -s "$f" ]] && kpids+=("$(cat "$f")"); done
  done
  (( ${#kpids[@]} > 0 )) || { echo "keepalived did not start:" >&2; cat "$work"/ka-*.log >&2; exit 1; }
  declare -A kb; for p in "${kpids[@]}"; do kb[$p]=$(cputicks "$p"); done
  load0=$(cut -d' ' -f1 /proc/loadavg); sleep "$window"; load1=$(cut -d' ' -f1 /proc/loadavg)
  sum=0; for p in "${kpids[@]}"; do sum=$(( sum + $(cputicks "$p") - kb[$p] )); done
  awk -v s="$sum" -v hz="$hz" -v w="$window" -v n="${#kpids[@]}" -v l0="$load0" -v l1="$load1" 'BEGIN {
    printf "keepalived idle over %d s (load %s..%s): %.2f %% of a core per node (%d processes on 2 nodes; advert_int 0.1 s, a check every 1 s)\n", w, l0, l1, 100*s/hz/w/2, n }'
  exit 0
fi
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(go version | cut -d' ' -f3), load $(cut -d' ' -f1-3 /proc/loadavg)"
store="${STORE:-etcd}" batch="${BATCH:-$k}"
if [[ -n "${HAVEN_BIN:-}" ]]; then cp "$HAVEN_BIN" "$work/haven"; else go build -o "$work/haven" ./cmd/haven; fi

storepids=() # the store's processes, for their CPU
case "$store" in
etcd|etcd3)
  members=1; [[ "$store" == etcd3 ]] && members=3
  echo "store: etcd $(etcd --version | awk '/etcd Version/{print $3}'), $members member(s) on loopback"
  cluster="" endpoints=""
  for m in $(seq "$members"); do
    cluster+="${cluster:+,}s$m=http://127.0.0.1:$((base+2*m))"
    endpoints+="${endpoints:+, }127.0.0.1:$((base+2*m-1))"
  done
  for m in $(seq "$members"); do
    etcd --name "s$m" --data-dir "$work/etcd$m" \
      --listen-client-urls "http://127.0.0.1:$((base+2*m-1))" --advertise-client-urls "http://127.0.0.1:$((base+2*m-1))" \
      --listen-peer-urls "http://127.0.0.1:$((base+2*m))" --initial-advertise-peer-urls "http://127.0.0.1:$((base+2*m))" \
      --initial-cluster "$cluster" --initial-cluster-token "scale$$" >"$work/etcd$m.log" 2>&1 &
    pids+=("$!"); storepids+=("$!")
  done
  for _ in $(seq 300); do etcdctl --endpoints "127.0.0.1:$((base+1))" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
  storeconf="store: {backend: etcd, endpoints: [$endpoints]}"
  ;;
postgres)
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  echo "store: PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on loopback (fsync on, max_connections 1000)"
  mkdir -p "$work/pg"; chown postgres: "$work/pg"; chmod 755 "$work"
  runuser -u postgres -- "$pgbin/initdb" -D "$work/pg/data" -U haven --auth=trust -E UTF8 --locale=C >/dev/null
  runuser -u postgres -- "$pgbin/postgres" -D "$work/pg/data" -p "$((base+1))" -k "$work/pg" \
    -c listen_addresses=127.0.0.1 -c max_connections=1000 -c shared_buffers=64MB >"$work/pg.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 300); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$((base+1))" && break; sleep 0.1; done
  pm=$(head -1 "$work/pg/data/postmaster.pid"); pids+=("$pm"); storepids+=("$pm") # under runuser
  runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$((base+1))" -U haven haven
  storeconf="store: {backend: postgres, dsn: \"postgres://haven@127.0.0.1:$((base+1))/haven?sslmode=disable\"}"
  ;;
*) echo "STORE must be etcd, etcd3 or postgres" >&2; exit 2 ;;
esac
# The store's CPU: its processes and, for PostgreSQL, every backend they fork.
storecpu() {
  local sum=0 p
  for p in "${storepids[@]}"; do
    sum=$(( sum + $(cputicks "$p") ))
    for c in $(pgrep -P "$p" 2>/dev/null); do sum=$(( sum + $(cputicks "$c") )); done
  done
  echo "$sum"
}

config() { # cluster index -> its config file
  local i=$1 d="$work/c$1" p=$((base+10*$1))
  mkdir -p "$d"
  cat >"$d/haven.yaml" <<YAML
cluster: c$i
mode: active-passive
data_dir: $d/data
timing: lan
api: {token: "scale-bench-token-$i"}
log: {level: info, format: text}
tls: {ca_file: $work/certs/ca.crt, cert_file: "$work/certs/\${NODE}.crt", key_file: "$work/certs/\${NODE}.key"}
$storeconf
${EXTRA_YAML:-}
nodes:
  - {name: n1, api: 127.0.0.1:$((p+1)), backend: 127.0.0.1:$((p+3)), env: {SERVICE_ADDR: "127.0.0.1:$((p+3))"}}
  - {name: n2, api: 127.0.0.1:$((p+2)), backend: 127.0.0.1:$((p+4)), env: {SERVICE_ADDR: "127.0.0.1:$((p+4))"}}
YAML
  [[ -n "${LIGHT:-}" ]] || cat >>"$d/haven.yaml" <<YAML
service:
  command: ["$work/haven", "sample-service"]
  standby: hot
  stop_signal: SIGTERM
  stop_grace: 2s
checks:
  - {name: sample-http, http: {url: "http://\${SERVICE_ADDR}/healthz", expect_status: 200}, interval: 100ms, timeout: 100ms, rise: 2, fall: 2}
YAML
  echo "$d/haven.yaml"
}
for i in $(seq "$k"); do config "$i" >/dev/null; done
"$work/haven" certs init --config "$work/c1/haven.yaml" --out "$work/certs" >/dev/null

declare -A agent
t0=$(ms)
started=0
while (( started < k )); do
  upto=$(( started + batch < k ? started + batch : k ))
  for i in $(seq "$((started+1))" "$upto"); do
    for n in n1 n2; do
      "$work/haven" agent --config "$work/c$i/haven.yaml" --node "$n" >"$work/c$i/$n.log" 2>&1 &
      agent[$i.$n]=$!; pids+=("$!")
    done
  done
  started=$upto
  (( started < k )) || break
  # This batch elected before the next starts.
  bdl=$(( $(ms) + 120000 ))
  until (( $(cat "$work"/c*/n*.log 2>/dev/null | grep -c 'msg="role change".*to=active' || true) >= started )); do
    (( $(ms) < bdl )) || { echo "the first $started clusters did not all elect within 120 s" >&2; exit 1; }
    sleep 0.5
  done
done
# Every cluster elected: one "to=active" line in one of its logs.
deadline=$(( $(ms) + 120000 ))
while :; do
  n=0; last=0
  for i in $(seq "$k"); do
    line=$(grep -h 'msg="role change".*to=active' "$work/c$i"/n*.log 2>/dev/null | head -1 || true)
    [[ -n "$line" ]] || continue
    n=$((n+1)); t=$(logms "$(sed -E 's/^time=([^ ]+).*/\1/' <<<"$line")"); (( t > last )) && last=$t
  done
  (( n == k )) && break
  (( $(ms) < deadline )) || { echo "only $n of $k clusters elected within 120 s" >&2; exit 1; }
  sleep 0.5
done
echo "elected: all $k clusters within $(( last - t0 )) ms of starting $((2*k)) agents${BATCH:+ ($batch clusters at a time)}"

sleep 5 # settle
declare -A before
for key in "${!agent[@]}"; do before[$key]=$(cputicks "${agent[$key]}"); done
e0=$(storecpu); load0=$(cut -d' ' -f1 /proc/loadavg)
sleep "$window"
sum=0 max=0 rss=0
for key in "${!agent[@]}"; do
  d=$(( $(cputicks "${agent[$key]}") - before[$key] )); sum=$((sum+d)); (( d > max )) && max=$d
  rss=$(( rss + $(awk '/VmRSS/{print $2}' "/proc/${agent[$key]}/status") ))
done
e1=$(storecpu); load1=$(cut -d' ' -f1 /proc/loadavg)
na=$((2*k))
awk -v s="$sum" -v m="$max" -v e=$((e1-e0)) -v n="$na" -v hz="$hz" -v w="$window" -v rss="$rss" -v l0="$load0" -v l1="$load1" 'BEGIN {
  printf "idle over %d s (load %s..%s): agents %.1f %% of a core together, %.2f %% each on average, %.2f %% the busiest; the store %.1f %%\n", w, l0, l1, 100*s/hz/w, 100*s/hz/w/n, 100*m/hz/w, 100*e/hz/w
  printf "memory: %.1f MiB RSS per agent on average\n", rss/n/1024 }'
if [[ "$store" == postgres ]]; then
  echo "store: PostgreSQL database $(runuser -u postgres -- "$pgbin/psql" -h 127.0.0.1 -p "$((base+1))" -U haven -Atc "select pg_size_pretty(pg_database_size('haven'))" haven 2>/dev/null || echo '?'), $(runuser -u postgres -- "$pgbin/psql" -h 127.0.0.1 -p "$((base+1))" -U haven -Atc "select count(*) from pg_stat_activity where datname='haven'" haven 2>/dev/null || echo '?') connections"
else
  { etcdctl --endpoints "127.0.0.1:$((base+1))" --command-timeout 10s endpoint status -w table 2>/dev/null || echo "| | | | etcdctl timed out |"; } |
    awk -F'|' 'NR==4 || /timed out/ {gsub(/^ +| +$/,"",$5); print "store: etcd database " $5; exit}' || true
fi

# Exactly one active per cluster: "none" is a cluster not serving (an
# overloaded machine fails checks), "several" would be a safety bug.
actives=0 none=0 several=0
for i in $(seq "$k"); do
  a=$("$work/haven" status --config "$work/c$i/haven.yaml" --json 2>/dev/null | grep -o '"role": *"active"' | wc -l || true)
  actives=$((actives+a)); (( a == 0 )) && none=$((none+1)); (( a > 1 )) && several=$((several+1))
done
echo "roles: $actives actives in $k clusters; $none clusters with none, $several with more than one"

for i in $(seq "$sample"); do
  (( i <= k )) || break
  pid=$("$work/haven" status --config "$work/c$i/haven.yaml" --active-pid agent)
  other=n1; [[ "$pid" == "${agent[$i.n1]}" ]] && other=n2
  before_n=$(grep -c 'to=active' "$work/c$i/$other.log" || true)
  tk=$(ms); { kill -KILL "$pid"; wait "$pid"; } 2>/dev/null || true
  dl=$(( tk + 30000 ))
  until (( $(grep -c 'to=active' "$work/c$i/$other.log" || true) > before_n )); do
    (( $(ms) < dl )) || { echo "cluster c$i: no failover within 30 s" >&2; exit 1; }
    sleep 0.05
  done
  line=$(grep 'to=active' "$work/c$i/$other.log" | tail -1)
  echo "failover c$i: kill -9 of the active's agent to $other active: $(( $(logms "$(sed -E 's/^time=([^ ]+).*/\1/' <<<"$line")") - tk )) ms"
done
