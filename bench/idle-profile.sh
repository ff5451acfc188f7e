#!/usr/bin/env bash
# Idle profile of running haven processes: the CPU each PID used over a
# window (utime+stime from /proc/PID/stat: the process's own CPU time, so
# the figure holds on a machine loaded by others), then, for the first PID,
# a perf profile (linux-perf, frame pointers: no pprof endpoint needed) with
# the samples grouped by the goroutine they ran in (the function under
# runtime.goexit), or by runtime thread (sysmon, the scheduler's idle loop).
# Usage: bench/idle-profile.sh SECONDS PID [PID...]
#   e.g. bench/idle-profile.sh 20 $(pgrep -f 'haven agent')
set -euo pipefail
(( $# >= 2 )) || { echo "usage: $0 SECONDS PID [PID...]" >&2; exit 2; }
w=$1; shift
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
declare -A a
for p in "$@"; do a[$p]=$(ticks "$p"); done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
data="$(mktemp /tmp/haven-idle-perf.XXXXXX)"
trap 'rm -f "$data"' EXIT
perf record -q -F 499 -g -p "$1" -o "$data" -- sleep "$w" >/dev/null 2>&1
for p in "$@"; do
  awk -v d=$(( $(ticks "$p") - a[$p] )) -v hz="$hz" -v w="$w" -v p="$p" -v c="$(tr '\0' ' ' </proc/"$p"/cmdline | cut -c1-90)" \
    'BEGIN { printf "pid %s: %.2f %% of a core  %s\n", p, 100*d/hz/w, c }'
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg); profile of pid $1 (share of samples by goroutine):"
perf script -i "$data" -F ip,sym 2>/dev/null | awk '
function flush() { if (n) { r = (root!="") ? root : (sys!="" ? sys : last); c[r]++; tot++ } n=0; root=""; prev=""; last=""; sys="" }
/^[ \t]*$/ { flush(); next }
{ s=$2; n++
  if (s=="runtime.goexit.abi0") { if (root=="") root=prev }
  else if (s=="runtime.sysmon" || s=="runtime.bgsweep" || s=="runtime.bgscavenge" || s=="runtime.gcBgMarkWorker") { if (sys=="") sys=s }
  else if (s=="runtime.schedule" || s=="runtime.findRunnable") { if (sys=="") sys="runtime scheduler (timer and netpoll wake-ups)" }
  prev=s; last=s }
END { flush(); for (k in c) printf "%5.1f%% %s\n", 100*c[k]/tot, k | "sort -rn | head -25" }'
