#!/usr/bin/env bash
# Alternating A/B/C of three server binaries, ROUNDS rounds each (3 nodes):
#   /var/tmp/ab3/keel-base   bb245de (the seventh same run's server code)
#   /var/tmp/ab3/keel-ns     1f8baef: close-only history waits wake on the run's close only;
#                            activity tokens name the run's queue; namespace records cached
#   /var/tmp/ab3/keel-reply  82c175a: that, and apply answers the batch's proposers directly
#                            (openraft client_write_ff with a reply closure)
# Usage: ab.sh OUT_DIR [ROUNDS]
set -u
OUT=$1; ROUNDS=${2:-3}; mkdir -p "$OUT"
WL=/var/tmp/keel-target/release/keel-workload
for r in $(seq 1 "$ROUNDS"); do
  for v in base ns reply; do
    echo "== workload $v round $r $(date +%T)" >> "$OUT/log.txt"
    TMPDIR=/var/tmp $WL --nodes 3 --concurrency 1,64 --workloads w1 --runs 1 --w2-workflows 10000 \
      --grpc-compression none --keel-bin /var/tmp/ab3/keel-$v --json "$OUT/$v-r$r.jsonl" >> "$OUT/log.txt" 2>&1
    rm -rf /var/tmp/.tmp*
  done
done
echo done >> "$OUT/log.txt"
