#!/bin/bash
# W2 after W1 + W1L: default snapshots (every 20000 entries) vs none during the run
W=/var/tmp/keel-target/release/keel-workload
for r in 1 2; do
  for v in snap nosnap; do
    if [ $v = snap ]; then B=/var/tmp/ab/keel-nowal2; else B=/var/tmp/ab/snap/keel-nosnap; fi
    TMPDIR=/var/tmp $W --nodes 3 --concurrency 1,64 --workloads w1,w1l --runs 1 --w2-workflows 10000 --grpc-compression none --trace-one --keel-bin $B --json /var/tmp/ab/snap/$v-r$r.jsonl > /var/tmp/ab/snap/$v-r$r.log 2>&1
    echo "$v r$r rc=$? $(grep '^| 3 nodes' $v-r$r.log)"
  done
done
