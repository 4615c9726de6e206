#!/usr/bin/env bash
# Data dir written by OLD (Debian librocksdb 7.8.3, Snappy SSTs) opened by NEW (bundled 7.9.2).
# Usage: upgrade-check.sh OLD_KEEL NEW_KEEL [WORKFLOWS] (run as: ... 2000). Uses the fixed ports
# of cluster-configs/local-3 (a manual check, not a test).
set -eu
OLD=$1 NEW=$2 N=${3:-300}
CONFIGS=$(cd "$(dirname "$0")/../../../.." && pwd)/cluster-configs/local-3
W=${WORKDIR:-/var/tmp/compat}; mkdir -p "$W"; cd "$W"; D=$W/data; rm -rf "$D"
wait_up() { for i in $(seq 1 120); do "$1" workflow count >/dev/null 2>&1 && return 0; sleep 0.5; done; echo "no cluster" >&2; return 1; }
"$OLD" up --configs "$CONFIGS" --data-dir "$D" > old.log 2>&1 & pid=$!
wait_up "$OLD"
for i in $(seq 1 "$N"); do "$OLD" workflow start --type T -t q -w "wf-$i" -i "\"$(head -c 4000 /dev/zero | tr '\0' a)\"" >/dev/null; done
for p in 7201 7202 7203; do "$OLD" cluster snapshot --address 127.0.0.1:$p; done
"$OLD" workflow count
kill -INT $pid; wait $pid || true
echo "sst files: $(find "$D" -name '*.sst' | wc -l)"
for f in $(find "$D" -name '*.sst' | head -3); do echo "$f $(stat -c %s $f)"; done
"$NEW" up --configs "$CONFIGS" --data-dir "$D" > new.log 2>&1 & pid=$!
wait_up "$NEW"
echo "count after reopen with NEW: $("$NEW" workflow count)"
"$NEW" workflow describe -w wf-1 | head -8
kill -INT $pid; wait $pid || true
grep -i -m3 'error\|compress' new.log || true
