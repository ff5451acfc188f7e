#!/usr/bin/env bash
# Replicated folders with many files: three real agents replicate a folder of
# FILES small files (default 100,000) that every node holds; a standby is
# killed, the active gets 1,000 new, 100 changed and 100 deleted files, and
# the standby starts again: the time until it has caught up from its
# manifest (agent start included, and from its API's first answer), with
# only the changed files sent. Then, side by side in the same run, rsync
# brings two copies of that standby's folder (hard links of it as it was
# while it was down) up to date from the active's folder:
# `rsync -a --delete --fsync` (haven fsyncs every file it writes: like for
# like) and `rsync -a --delete`, to an rsync daemon on 127.0.0.1 (plain
# TCP). Everything is on a tmpfs (/dev/shm) when there is one.
# It is internal/folders' TestFoldersCatchUpBigFolder (20,000 files in CI,
# without rsync).
# Usage: bench/sync-big.sh [FILES]   (hold the bench lock:
#   flock /tmp/haven-bench.lock bench/sync-big.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-100000}
command -v rsync >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends rsync >/dev/null; }
echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3), $(rsync --version | head -1 | cut -d' ' -f1-4); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
HAVEN_SYNC_RSYNC=1 HAVEN_SYNC_FILES=$FILES go test -count=1 -run '^TestFoldersCatchUpBigFolder$' -v ./internal/folders | grep -E 'cluster_big_test|^(--- |ok|FAIL)'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
