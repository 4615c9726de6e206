#!/bin/bash
# W2 after W1 + W1L on the same servers (the same-run driver's order), variants alternating.
# usage: w2-after-load.sh KEEL_BIN ROUNDS "FIRST SECOND" OUT_DIR
#   wal = KEEL_EXP_SM_WAL set (apply writes through the WAL, the shipped behaviour), nowal = unset.
# The knob was a local one-line edit of `BatchStore::commit` in the A/B builds, not committed:
#   wo.disable_wal(std::env::var_os("KEEL_EXP_SM_WAL").is_none());
bin=$1 rounds=$2 order=$3 out=$4
W=/var/tmp/keel-target/release/keel-workload
for r in $(seq 1 "$rounds"); do
  for v in $order; do
    if [ "$v" = wal ]; then export KEEL_EXP_SM_WAL=1; else unset KEEL_EXP_SM_WAL; fi
    TMPDIR=/var/tmp $W --nodes 3 --concurrency 1,64 --workloads w1,w1l --runs 1 --w2-workflows 10000 \
      --grpc-compression none --trace-one --keel-bin "$bin" --json "$out/$v-r$r.jsonl" > "$out/$v-r$r.log" 2>&1
    echo "$v r$r rc=$? $(grep '^| 3 nodes' "$out/$v-r$r.log")"
  done
done
