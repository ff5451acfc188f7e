#!/usr/bin/env bash
# Replicated folders with many files: three real agents replicate a folder of
# FILES small files (default 100,000) that every node holds; a standby is
# killed, the active gets 1,000 new, 100 changed and 100 deleted files, and
# the standby starts again: the time until it has caught up from its
# manifest (agent start included), with only the changed files sent.
# It is internal/folders' TestFoldersCatchUpBigFolder (20,000 files in CI).
# Usage: bench/sync-big.sh [FILES]
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-100000}
echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
HAVEN_SYNC_FILES=$FILES go test -count=1 -run '^TestFoldersCatchUpBigFolder$' -v ./internal/folders | grep -E 'cluster_big_test|^(--- |ok|FAIL)'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
