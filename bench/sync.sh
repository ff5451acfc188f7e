#!/usr/bin/env bash
# Replicated folders (sync:) vs rsync, side by side in one run, on loopback:
#   1. throughput: ship a data set that already exists (a standby catching
#      up), ROUNDS rounds; each round runs every variant below on the same
#      files (odd rounds in the order listed, even rounds in reverse), each
#      after a `sync` and with its source read once before (all from a warm
#      page cache; all write to the same file system):
#        haven            two folder services in one process, HTTPS with
#                         mutual TLS (its AEAD checks every record: no
#                         CRC-32C per chunk), SHA-256 per file, fsync before
#                         the rename: what a cluster with tls: (the
#                         default) does;
#        haven-plain      the same over plain HTTP with the API token and a
#                         CRC-32C per chunk: what a cluster whose config
#                         says `insecure: true` does (HAVEN_SYNC_INSECURE=1);
#        rsync --fsync    `rsync -a --fsync` to an rsync daemon on 127.0.0.1
#                         (plain TCP, no encryption);
#        rsync            the same with rsync's defaults (no fsync);
#        rsync-ssh --fsync / rsync-ssh
#                         `rsync -a [--fsync] -e ssh` to 127.0.0.1: encrypted
#                         and authenticated, as lsyncd and most operators run
#                         it (a throwaway sshd on a random port with keys
#                         made in the work directory; openssh-server is
#                         installed with apt-get when missing; the system's
#                         sshd is neither configured nor started).
#      Each round's ratios are printed with the load then; the median of the
#      rounds' ratios is the figure. The ratios, haven's MB/s over rsync's:
#        haven / rsync-ssh --fsync    encrypted vs encrypted, both fsync:
#                                     like for like;
#        haven-plain / rsync --fsync  plain vs plain, both fsync: like for
#                                     like;
#        haven / rsync --fsync        (the earlier figure) haven encrypts,
#                                     rsync does not;
#        haven / rsync, haven / rsync-ssh  rsync's defaults (no fsync).
#      Data sets: "mixed" (below) and "big" (the 100 MiB file alone;
#      BIGALONE=0 skips it; SETS=big runs it alone, without the mixed set).
#      SSH=0 leaves out the rsync-ssh runs (no sshd); SSH_CIPHER picks
#      ssh's cipher (default: OpenSSH's first choice, chacha20-poly1305;
#      e.g. aes128-gcm@openssh.com, faster with AES-NI).
#   2. latency: the time from a file's close on the active until it is on
#      the standby, p50/p99, for 1 KiB, 1 MiB and 10 MiB files (and 100 MiB
#      with FULL=1), with the default quiet time of 500 ms; LATENCY=0 skips
#      it.
#   Durability: haven fsyncs every file before its rename and then its
#   directory; rsync --fsync fsyncs every file, not its directory.
#   FS=tmpfs puts the data and every destination on a tmpfs (a directory
#   under /dev/shm): no disk, so no other user's I/O and no fsync cost, only
#   each tool's own CPU and protocol; FS=disk (default) uses /tmp, the disk.
# Usage: bench/sync.sh [ROUNDS]   (default 3; hold the bench lock:
#   flock /tmp/haven-bench.lock bench/sync.sh). The data set: 1000 x 1 KiB,
#   50 x 1 MiB, 1 x 100 MiB (random bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SSH=${SSH:-1}
need() { # need COMMAND PACKAGE: install the Debian package when the command is missing
  command -v "$1" >/dev/null && return
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
}
need rsync rsync
if [ "$SSH" = 1 ]; then
  need ssh openssh-client
  [ -x /usr/sbin/sshd ] || need sshd openssh-server
fi

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
RSYNCD="" SSHD=""
cleanup() {
  [ -n "$RSYNCD" ] && kill "$RSYNCD" 2>/dev/null
  [ -n "$SSHD" ] && kill "$SSHD" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3), $(rsync --version | head -1 | cut -d' ' -f1-4)"
[ "$SSH" = 1 ] && echo "ssh: $(ssh -V 2>&1)"
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

SSHDST="$W/sshdst"
if [ "$SSH" = 1 ]; then
  # A throwaway sshd on 127.0.0.1 with its own host key, taking only a key
  # made here; killed at the end (cleanup).
  K="$W/ssh"
  mkdir -p "$K" "$SSHDST"
  chmod 700 "$K"
  ssh-keygen -q -t ed25519 -N '' -f "$K/host" -C bench-host
  ssh-keygen -q -t ed25519 -N '' -f "$K/client" -C bench-client
  cp "$K/client.pub" "$K/authorized_keys"
  SPORT=$((20000 + RANDOM % 20000))
  [ "$SPORT" = "$PORT" ] && SPORT=$((SPORT + 1))
  cat >"$K/sshd_config" <<CFG
ListenAddress 127.0.0.1
Port $SPORT
HostKey $K/host
PidFile $K/sshd.pid
AuthorizedKeysFile $K/authorized_keys
AllowUsers $(id -un)
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel ERROR
CFG
  [ "$(id -u)" = 0 ] && mkdir -p /run/sshd # its privilege separation directory, as Debian's service makes it
  /usr/sbin/sshd -D -e -f "$K/sshd_config" 2>"$K/sshd.log" &
  SSHD=$!
  SSHCMD="ssh -F /dev/null -p $SPORT -i $K/client -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=$K/known_hosts -o LogLevel=ERROR${SSH_CIPHER:+ -c $SSH_CIPHER}"
  for _ in $(seq 1 100); do $SSHCMD "$(id -un)@127.0.0.1" true 2>/dev/null && break; sleep 0.1; done
  $SSHCMD "$(id -un)@127.0.0.1" true || { echo "the throwaway sshd does not answer:" >&2; cat "$K/sshd.log" >&2; exit 1; }
  echo "ssh cipher (${SSH_CIPHER:-the default of OpenSSH}): $($SSHCMD -v "$(id -un)@127.0.0.1" true 2>&1 | sed -n 's/.*kex: server->client cipher: \([^ ]*\).*/\1/p' | head -1)"
fi

TMPDIR= go test -c -o "$W/folders.test" ./internal/folders
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cputicks() { # $1: a daemon's pid; sets TICKS: this shell's children's and that daemon's children's CPU ticks
  times >"$W/times" # in this shell: a subshell's children are not this shell's
  local c d
  c=$(tail -1 "$W/times" | awk '{gsub("m"," "); gsub("s",""); print ($1*60+$2+$3*60+$4)}')
  d=$(awk '{print $16 + $17}' "/proc/$1/stat")
  TICKS=$(echo "$c * $(getconf CLK_TCK) + $d" | bc -l)
}
warm() { find "$1" -type f -exec cat {} + >/dev/null; } # both tools read from a warm page cache
run_rsync() { # $1: data set, $2: daemon or ssh, $3: extra option (--fsync or none); sets RS (MB/s) and RSCPU (s)
  local dst=$W/rsdst daemon=$RSYNCD
  [ "$2" = ssh ] && dst=$SSHDST daemon=$SSHD
  rm -rf "$dst"/* "$dst"/.[!.]* "$1/.haven-sync" 2>/dev/null || true
  sync
  warm "$1"
  # CPU of rsync: the client (this shell's children: rsync, and ssh) and the
  # daemon's per-connection children (the rsync daemon's, or sshd's with
  # the remote rsync: cutime+cstime in /proc/PID/stat), in ticks.
  cputicks "$daemon"
  local c0=$TICKS t0 t1
  t0=$(date +%s.%N)
  if [ "$2" = ssh ]; then
    rsync -a ${3:+"$3"} -e "$SSHCMD" "$1/" "$(id -un)@127.0.0.1:$dst/"
  else
    rsync -a ${3:+"$3"} "$1/" "rsync://127.0.0.1:$PORT/dst/"
  fi
  t1=$(date +%s.%N)
  sleep 0.2 # the daemon reaps its connection's child
  cputicks "$daemon"
  RSCPU=$(echo "($TICKS - $c0) / $(getconf CLK_TCK)" | bc -l)
  RS=$(echo "$(du -sb --exclude=.haven-sync "$1" | cut -f1) / ($t1 - $t0) / 1000000" | bc -l)
}
run_haven() { # $1: data set, $2: tls or plain (insecure: true); sets HV (MB/s) and HVCPU (s)
  rm -rf "$1/.haven-sync"
  sync
  warm "$1"
  local out ins=0
  [ "$2" = plain ] && ins=1
  out=$(HAVEN_SYNC_INSECURE=$ins HAVEN_SYNC_DATA="$1" "$W/folders.test" -test.run '^$' -test.bench BenchmarkSyncThroughput -test.benchtime 1x)
  HV=$(echo "$out" | awk '/^BenchmarkSyncThroughput/ {for (i=1;i<=NF;i++) if ($(i+1)=="MB/s") print $i}')
  HVCPU=$(echo "$out" | awk '/^BenchmarkSyncThroughput/ {for (i=1;i<=NF;i++) if ($(i+1)=="cpu-s/sync") print $i}')
  [ -n "$HV" ] || { echo "haven ($2) failed:" >&2; echo "$out" >&2; exit 1; }
}
# The variants of a round: name, then how to run it.
VARIANTS="rsync-fsync haven rsync-ssh-fsync haven-plain rsync rsync-ssh"
[ "$SSH" = 1 ] || VARIANTS="rsync-fsync haven haven-plain rsync"
run_variant() { # $1: variant, $2: data set; sets MBS[$1] and CPUS[$1]
  case $1 in
  haven) run_haven "$2" tls; MBS[$1]=$HV CPUS[$1]=$HVCPU ;;
  haven-plain) run_haven "$2" plain; MBS[$1]=$HV CPUS[$1]=$HVCPU ;;
  rsync-fsync) run_rsync "$2" daemon --fsync; MBS[$1]=$RS CPUS[$1]=$RSCPU ;;
  rsync) run_rsync "$2" daemon; MBS[$1]=$RS CPUS[$1]=$RSCPU ;;
  rsync-ssh-fsync) run_rsync "$2" ssh --fsync; MBS[$1]=$RS CPUS[$1]=$RSCPU ;;
  rsync-ssh) run_rsync "$2" ssh; MBS[$1]=$RS CPUS[$1]=$RSCPU ;;
  esac
}
# The ratios: name, numerator, denominator.
RATIOS="tls-vs-ssh:haven:rsync-ssh-fsync plain-vs-plain:haven-plain:rsync-fsync tls-vs-plain:haven:rsync-fsync tls-vs-nofsync:haven:rsync tls-vs-ssh-nofsync:haven:rsync-ssh"
[ "$SSH" = 1 ] || RATIOS="plain-vs-plain:haven-plain:rsync-fsync tls-vs-plain:haven:rsync-fsync tls-vs-nofsync:haven:rsync"
declare -A MBS CPUS
# side SET ROUND: one round of every variant on data set SET, in the order
# listed (odd rounds) or reversed (even rounds).
side() {
  local set=$1 r=$2 dir=$DATA order=$VARIANTS v line
  [ "$set" = big ] && dir=$BIG
  [ $((r % 2)) = 0 ] && order=$(echo "$VARIANTS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for v in $order; do run_variant "$v" "$dir"; done
  line=$(printf "%s round %d (%s, load %s; order: %s):" "$set" "$r" "$FS" "$(cut -d' ' -f1 /proc/loadavg)" "$(echo $order)")
  for v in $VARIANTS; do line+=$(printf " %s %.1f MB/s %.2f CPU s;" "$v" "${MBS[$v]}" "${CPUS[$v]}"); done
  echo "$line"
  line="  ratios:"
  local spec name num den
  for spec in $RATIOS; do
    IFS=: read -r name num den <<<"$spec"
    echo "${MBS[$num]} / ${MBS[$den]}" | bc -l >>"$W/ratio-$set-$name"
    echo "${CPUS[$num]} / ${CPUS[$den]}" | bc -l >>"$W/cpuratio-$set-$name"
    line+=$(printf " %s/%s %.2f (CPU %.2f);" "$num" "$den" "$(tail -1 "$W/ratio-$set-$name")" "$(tail -1 "$W/cpuratio-$set-$name")")
  done
  echo "$line"
}
SETS=${SETS:-mixed}
[ "${BIGALONE:-1}" = 1 ] && [ "$SETS" = mixed ] && SETS="mixed big"
for set in $SETS; do
  for spec in $RATIOS; do
    IFS=: read -r name _ _ <<<"$spec"
    : >"$W/ratio-$set-$name"
    : >"$W/cpuratio-$set-$name"
  done
  for r in $(seq 1 "$ROUNDS"); do side "$set" "$r"; done
  for spec in $RATIOS; do
    IFS=: read -r name num den <<<"$spec"
    printf "%s (%s): %s/%s (%s) per round: %s; median of %d rounds: %.2f (CPU time ratio %.2f)\n" "$set" "$FS" "$num" "$den" "$name" "$(xargs printf '%.2f ' <"$W/ratio-$set-$name")" "$ROUNDS" "$(median <"$W/ratio-$set-$name")" "$(median <"$W/cpuratio-$set-$name")"
  done
done
echo "load average after the throughput rounds: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "${LATENCY:-1}" = 1 ]; then
  SIZES="1024:1048576:10485760"
  [ "${FULL:-0}" = 1 ] && SIZES="$SIZES:104857600"
  HAVEN_SYNC_SIZES="$SIZES" HAVEN_SYNC_COUNT=${COUNT:-20} "$W/folders.test" -test.run '^$' -test.bench BenchmarkSyncLatency -test.benchtime 1x -test.v | grep 'haven:' | sed 's/^ *bench_test.go:[0-9]*: //'
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
