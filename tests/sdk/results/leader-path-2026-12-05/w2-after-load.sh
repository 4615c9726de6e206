#!/bin/bash
# W2 after W1 + W1L on the same servers (the same-run driver's order), base and reply
# alternating (binaries as in ab.sh).
# usage: w2-after-load.sh ROUNDS OUT_DIR
rounds=$1 out=$2
W=/var/tmp/keel-target/release/keel-workload
for r in $(seq 1 "$rounds"); do
  for v in base reply; do
    TMPDIR=/var/tmp $W --nodes 3 --concurrency 1,64 --workloads w1,w1l --runs 1 --w2-workflows 10000 \
      --grpc-compression none --trace-one --keel-bin /var/tmp/ab3/keel-$v --json "$out/$v-r$r.jsonl" > "$out/$v-r$r.log" 2>&1
    echo "$v r$r rc=$? $(grep '^| 3 nodes' "$out/$v-r$r.log")"
    rm -rf /var/tmp/.tmp*
  done
done
