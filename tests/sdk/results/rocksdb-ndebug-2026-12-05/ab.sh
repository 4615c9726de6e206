#!/usr/bin/env bash
# Alternating A/B: /var/tmp/ab/keel-dyn (Debian librocksdb 7.8.3, no NDEBUG) against
# /var/tmp/ab/keel-$B (a bundled RocksDB 7.9.2 build, NDEBUG).
#   ab.sh static /var/tmp/ab/static/out   # first A/B: bundled without Snappy
#   ab.sh snappy /var/tmp/ab/snappy/out   # second A/B: bundled with Snappy (the adopted build)
set -u
B=$1 OUT=$2; mkdir -p "$OUT"
WL=/var/tmp/keel-target/release/keel-workload
for r in 1 2 3; do
  for v in dyn "$B"; do
    echo "== engine $v round $r" >> "$OUT/engine.txt"
    /var/tmp/ab/keel-$v bench engine --workflows 4000 --activities 10 >> "$OUT/engine.txt" 2>&1
  done
done
for r in 1 2 3; do
  for v in dyn "$B"; do
    echo "== workload $v round $r $(date +%T)" >> "$OUT/log.txt"
    TMPDIR=/var/tmp $WL --nodes 3 --concurrency 1,64 --workloads w1,w1l --runs 1 --w2-workflows 10000 \
      --grpc-compression none --keel-bin /var/tmp/ab/keel-$v --json "$OUT/$v-r$r.jsonl" >> "$OUT/log.txt" 2>&1
    rm -rf /var/tmp/.tmp*
  done
done
echo done >> "$OUT/log.txt"
