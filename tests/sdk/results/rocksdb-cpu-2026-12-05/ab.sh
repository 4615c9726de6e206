#!/usr/bin/env bash
# Alternating A/B of two server binaries of the same Keel code, 3 rounds each (3 nodes):
#   /var/tmp/ab2/keel-base  RocksDB tables Snappy-compressed at every level, software CRC32C
#   /var/tmp/ab2/keel-new   no compression for the log and state-machine levels 0-2,
#                           RocksDB/Snappy C++ built with SSE4.2 + PCLMUL (hardware CRC32C)
# Usage: ab.sh OUT_DIR
set -u
OUT=$1; mkdir -p "$OUT"
WL=/var/tmp/keel-target/release/keel-workload
for r in 1 2 3; do
  for v in base new; do
    echo "== engine $v round $r" >> "$OUT/engine.txt"
    /var/tmp/ab2/keel-$v bench engine --workflows 4000 --activities 10 >> "$OUT/engine.txt" 2>&1
  done
done
for r in 1 2 3; do
  for v in base new; do
    echo "== workload $v round $r $(date +%T)" >> "$OUT/log.txt"
    TMPDIR=/var/tmp $WL --nodes 3 --concurrency 1,64 --workloads w1 --runs 1 --w2-workflows 10000 \
      --grpc-compression none --keel-bin /var/tmp/ab2/keel-$v --json "$OUT/$v-r$r.jsonl" >> "$OUT/log.txt" 2>&1
    rm -rf /var/tmp/.tmp*
  done
done
echo done >> "$OUT/log.txt"
