#!/usr/bin/env bash
# Replicated folders (sync:) vs rsync, side by side in one run, on loopback:
#   1. throughput: ship a data set that already exists (a standby catching
#      up): haven (two folder services in one process, HTTPS with mutual TLS,
#      whose AEAD checks every record: no CRC-32C per chunk over TLS;
#      SHA-256 per file, fsync before the rename) against
#      `rsync -a --fsync` to an rsync daemon on 127.0.0.1 (plain TCP, no
#      encryption), on the same files, ROUNDS rounds; each round runs both
#      (odd rounds rsync first, even rounds haven first), each after a
#      `sync` and with its source read once before (both from a warm page
#      cache; both write to the same file system). Each
#      round's ratio is printed with the load then; the median of the
#      rounds' ratios is the figure. Data sets: "mixed" (below) and "big"
#      (the 100 MiB file alone; BIGALONE=0 skips it; SETS=big runs it
#      alone, without the mixed set).
#   2. latency: the time from a file's close on the active until it is on
#      the standby, p50/p99, for 1 KiB, 1 MiB and 10 MiB files (and 100 MiB
#      with FULL=1), with the default quiet time of 500 ms.
#   Durability: haven fsyncs every file before its rename and then its
#   directory; rsync is run twice per round, with --fsync (every file, not
#   its directory: like for like, the ratio to go by) and with its defaults
#   (no fsync at all: the default-settings ratio).
#   FS=tmpfs puts the data and both tools' destinations on a tmpfs (a
#   directory under /dev/shm): no disk, so no other user's I/O and no
#   fsync cost, only each tool's own CPU and protocol; FS=disk (default)
#   uses /tmp, the disk.
# Usage: bench/sync.sh [ROUNDS]   (default 3). The data set: 1000 x 1 KiB,
# 50 x 1 MiB, 1 x 100 MiB (random bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
command -v rsync >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends rsync >/dev/null; }

FS=${FS:-disk}
case $FS in
disk) W=$(mktemp -d /tmp/haven-bench-sync.XXXXXX) ;;
tmpfs)
  W=$(mktemp -d /dev/shm/haven-bench-sync.XXXXXX)
  [ "$(stat -f -c %T "$W")" = tmpfs ] || { echo "/dev/shm is not a tmpfs here" >&2; rm -rf "$W"; exit 1; }
  ;;
*) echo "FS=$FS: disk or tmpfs" >&2; exit 2 ;;
esac
# haven's destination is the test binary's temporary directory: on the same
# file system as rsync's.
export TMPDIR="$W/tmp"
mkdir -p "$TMPDIR"
RSYNCD=""
cleanup() { [ -n "$RSYNCD" ] && kill "$RSYNCD" 2>/dev/null; wait 2>/dev/null; rm -rf "$W" 2>/dev/null || true; }
trap cleanup EXIT

echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3), $(rsync --version | head -1 | cut -d' ' -f1-4)"
echo "file system: $FS ($(stat -f -c %T "$W") at $W)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

DATA="$W/data"
mkdir -p "$DATA/small" "$DATA/medium"
for i in $(seq 1 1000); do head -c 1024 /dev/urandom >"$DATA/small/k$i"; done
for i in $(seq 1 50); do head -c 1048576 /dev/urandom >"$DATA/medium/m$i"; done
head -c 104857600 /dev/urandom >"$DATA/big"
BYTES=$(du -sb "$DATA" | cut -f1)
echo "data: 1051 files, $BYTES bytes (mixed); the 100 MiB file alone (big)"
BIG="$W/big"
mkdir -p "$BIG"
ln "$DATA/big" "$BIG/big"

PORT=$((20000 + RANDOM % 20000))
cat >"$W/rsyncd.conf" <<CFG
use chroot = no
uid = $(id -u)
gid = $(id -g)
[dst]
  path = $W/rsdst
  read only = no
CFG
mkdir -p "$W/rsdst"
rsync --daemon --no-detach --address=127.0.0.1 --port=$PORT --config="$W/rsyncd.conf" --log-file="$W/rsyncd.log" &
RSYNCD=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done

TMPDIR= go test -c -o "$W/folders.test" ./internal/folders
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cputicks() { # sets TICKS: this shell's children's and the rsync daemon's children's CPU ticks
  times >"$W/times" # in this shell: a subshell's children are not this shell's
  local c d
  c=$(tail -1 "$W/times" | awk '{gsub("m"," "); gsub("s",""); print ($1*60+$2+$3*60+$4)}')
  d=$(awk '{print $16 + $17}' "/proc/$RSYNCD/stat")
  TICKS=$(echo "$c * $(getconf CLK_TCK) + $d" | bc -l)
}
warm() { find "$1" -type f -exec cat {} + >/dev/null; } # both tools read from a warm page cache
run_rsync() { # $1: data set, $2: extra option (--fsync or none); sets RS (MB/s) and RSCPU (s)
  rm -rf "$W/rsdst"/* "$W/rsdst"/.[!.]* "$1/.haven-sync" 2>/dev/null || true
  sync
  warm "$1"
  # CPU of rsync: the client (this shell's children) and the daemon's
  # per-connection children (cutime+cstime in /proc/PID/stat), in ticks.
  cputicks
  local c0=$TICKS t0 t1
  t0=$(date +%s.%N)
  rsync -a ${2:+"$2"} "$1/" "rsync://127.0.0.1:$PORT/dst/"
  t1=$(date +%s.%N)
  sleep 0.2 # the daemon reaps its connection's child
  cputicks
  RSCPU=$(echo "($TICKS - $c0) / $(getconf CLK_TCK)" | bc -l)
  RS=$(echo "$(du -sb --exclude=.haven-sync "$1" | cut -f1) / ($t1 - $t0) / 1000000" | bc -l)
}
run_haven() { # $1: data set; sets HV (MB/s) and HVCPU (s)
  rm -rf "$1/.haven-sync"
  sync
  warm "$1"
  local out
  out=$(HAVEN_SYNC_DATA="$1" "$W/folders.test" -test.run '^$' -test.bench BenchmarkSyncThroughput -test.benchtime 1x)
  HV=$(echo "$out" | awk '/^BenchmarkSyncThroughput/ {for (i=1;i<=NF;i++) if ($(i+1)=="MB/s") print $i}')
  HVCPU=$(echo "$out" | awk '/^BenchmarkSyncThroughput/ {for (i=1;i<=NF;i++) if ($(i+1)=="cpu-s/sync") print $i}')
}
# side SET ROUND: one round of both tools on data set SET, in alternating
# order (odd rounds rsync first, even rounds haven first), both reading a
# warm page cache and both writing with an fsync per file.
side() {
  local set=$1 r=$2 dir=$DATA
  [ "$set" = big ] && dir=$BIG
  local rs rscpu
  if [ $((r % 2)) = 1 ]; then
    run_rsync "$dir" --fsync; rs=$RS rscpu=$RSCPU; run_haven "$dir"; run_rsync "$dir"
  else
    run_rsync "$dir"; local plain=$RS plaincpu=$RSCPU
    run_haven "$dir"; run_rsync "$dir" --fsync; rs=$RS rscpu=$RSCPU RS=$plain RSCPU=$plaincpu
  fi
  printf "%s round %d (%s, load %s, %s first): rsync -a --fsync (daemon, plain TCP) %.1f MB/s, %.2f CPU s; haven (mutual TLS) %.1f MB/s, %.2f CPU s; ratio %.2f, CPU ratio %.2f; rsync -a (no fsync) %.1f MB/s, %.2f CPU s, ratio %.2f\n" "$set" "$r" "$FS" "$(cut -d' ' -f1 /proc/loadavg)" "$([ $((r % 2)) = 1 ] && echo 'rsync --fsync' || echo 'rsync')" "$rs" "$rscpu" "$HV" "$HVCPU" "$(echo "$HV / $rs" | bc -l)" "$(echo "$HVCPU / $rscpu" | bc -l)" "$RS" "$RSCPU" "$(echo "$HV / $RS" | bc -l)"
  echo "$HV / $rs" | bc -l >>"$W/ratios-$set"
  echo "$HVCPU / $rscpu" | bc -l >>"$W/cpuratios-$set"
  echo "$HV / $RS" | bc -l >>"$W/plainratios-$set"
}
SETS=${SETS:-mixed}
[ "${BIGALONE:-1}" = 1 ] && [ "$SETS" = mixed ] && SETS="mixed big"
for set in $SETS; do
  : >"$W/ratios-$set"
  : >"$W/cpuratios-$set"
  : >"$W/plainratios-$set"
  for r in $(seq 1 "$ROUNDS"); do side "$set" "$r"; done
  printf "%s (%s): throughput ratio haven/rsync --fsync (like for like) per round: %s; median of %d rounds: %.2f\n" "$set" "$FS" "$(xargs printf '%.2f ' <"$W/ratios-$set")" "$ROUNDS" "$(median <"$W/ratios-$set")"
  printf "%s (%s): throughput ratio haven/rsync (rsync's defaults: no fsync) per round: %s; median of %d rounds: %.2f\n" "$set" "$FS" "$(xargs printf '%.2f ' <"$W/plainratios-$set")" "$ROUNDS" "$(median <"$W/plainratios-$set")"
  printf "%s (%s): CPU time ratio haven/rsync --fsync (both ends), median of %d rounds: %.2f\n" "$set" "$FS" "$ROUNDS" "$(median <"$W/cpuratios-$set")"
done
echo "load average after the throughput rounds: $(cut -d' ' -f1-3 /proc/loadavg)"

SIZES="1024:1048576:10485760"
[ "${FULL:-0}" = 1 ] && SIZES="$SIZES:104857600"
HAVEN_SYNC_SIZES="$SIZES" HAVEN_SYNC_COUNT=${COUNT:-20} "$W/folders.test" -test.run '^$' -test.bench BenchmarkSyncLatency -test.benchtime 1x -test.v | grep 'haven:' | sed 's/^ *bench_test.go:[0-9]*: //'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
