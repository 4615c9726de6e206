#!/usr/bin/env bash
# Alternating A/B of two server binaries, 3 rounds each (3 nodes):
#   /var/tmp/ab3/keel-base  bb245de: a close-only history wait wakes on every step of its run;
#                           an activity completion reads the run to find its task queue
#   /var/tmp/ab3/keel-new   72b626f: the wait wakes on the run's close only; the activity
#                           token names the queue
# Usage: ab.sh OUT_DIR [ROUNDS]
set -u
OUT=$1; ROUNDS=${2:-3}; mkdir -p "$OUT"
WL=/var/tmp/keel-target/release/keel-workload
for r in $(seq 1 "$ROUNDS"); do
  for v in base new; do
    echo "== workload $v round $r $(date +%T)" >> "$OUT/log.txt"
    TMPDIR=/var/tmp $WL --nodes 3 --concurrency 1,64 --workloads w1 --runs 1 --w2-workflows 10000 \
      --grpc-compression none --keel-bin /var/tmp/ab3/keel-$v --json "$OUT/$v-r$r.jsonl" >> "$OUT/log.txt" 2>&1
    rm -rf /var/tmp/.tmp*
  done
done
echo done >> "$OUT/log.txt"
