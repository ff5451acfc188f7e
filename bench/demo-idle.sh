#!/usr/bin/env bash
# Idle CPU of `haven demo`'s agents (embedded etcd member each): starts the
# demo from BIN on base port PORT, waits for its first election plus 10 s,
# prints each agent's own CPU (utime+stime from /proc) over WINDOW seconds,
# its wake-ups (context switches of all its threads per second: what idle
# CPU scales with, and much less dependent on the machine's load than the
# CPU time) and its memory (RSS; PSS, which shares the binary's pages among
# the processes mapping them; anonymous, the process's own), then stops the
# demo and everything it started. Alternate an old and a new build to
# compare them (docs/benchmarks.md, "Idle cost").
# Usage: bench/demo-idle.sh BIN [PORT [WINDOW]]   (defaults 27100 20)
#        ALONE=1 bench/demo-idle.sh ...  (the demo itself, which polls the
#          events every 200 ms, and its proxy, which probes the agents and
#          watches the store, are stopped with SIGSTOP after the first
#          election: the agents and their members alone)
set -u
(( $# >= 1 )) || { echo "usage: $0 BIN [PORT [WINDOW]]" >&2; exit 2; }
bin=$1 port=${2:-27100} w=${3:-20}
dir=$(mktemp -d /tmp/haven-demo-idle.XXXXXX)
$bin demo --port $port --dir $dir >$dir/out.txt 2>&1 &
dpid=$! pids=""
frozen=""
stop() {
  [[ -n "$frozen" ]] && kill -CONT $frozen 2>/dev/null
  kill -TERM "$dpid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$dpid" 2>/dev/null
  for p in $pids; do kill -0 "$p" 2>/dev/null && kill -KILL "$p"; done
  rm -rf "$dir"
}
trap stop EXIT
for _ in $(seq 120); do n=$(pgrep -f "$dir.*agent" | wc -l); grep -q "active" $dir/out.txt 2>/dev/null && (( n >= 3 )) && break; sleep 0.5; done
if [[ -n "${ALONE:-}" ]]; then frozen="$dpid $(pgrep -f " proxy --config $dir" | tr '\n' ' ')"; kill -STOP $frozen; fi
sleep 10
pids=$(pgrep -f " agent --config $dir" | tr '\n' ' ')
hz=$(getconf CLK_TCK)
csw() { cat /proc/$1/task/*/status 2>/dev/null | awk '/ctxt_switches/{n+=$2} END{print n+0}'; }
declare -A a c; for p in $pids; do a[$p]=$(awk '{print $14+$15}' /proc/$p/stat); c[$p]=$(csw $p); done
l0=$(cut -d' ' -f1 /proc/loadavg); sleep $w; l1=$(cut -d' ' -f1 /proc/loadavg)
out="" wk=""
for p in $pids; do
  d=$(( $(awk '{print $14+$15}' /proc/$p/stat) - a[$p] )); out="$out $(awk -v d=$d -v hz=$hz -v w=$w 'BEGIN{printf "%.2f", 100*d/hz/w}')"
  wk="$wk $(( ($(csw $p) - c[$p]) / w ))"
done
mem() { awk -v k=$2 '$1==k":"{printf "%.0f ", $2/1024}' /proc/$1/smaps_rollup; }
echo "$(basename $bin)${ALONE:+ (alone)} agents:$out (% of a core each over ${w}s, load $l0..$l1; wake-ups/s$wk; RSS $(for p in $pids; do mem $p Rss; done)PSS $(for p in $pids; do mem $p Pss; done)anon $(for p in $pids; do mem $p Anonymous; done)MiB)"
