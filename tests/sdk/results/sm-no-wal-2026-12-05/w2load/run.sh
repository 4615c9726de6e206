#!/bin/bash
# W2 after W1 + W1L on the same servers (the same-run driver's order), alternating wal / nowal
W=/var/tmp/keel-target/release/keel-workload
for r in 1 2; do
  for v in wal nowal; do
    if [ $v = wal ]; then export KEEL_EXP_SM_WAL=1; else unset KEEL_EXP_SM_WAL; fi
    TMPDIR=/var/tmp $W --nodes 3 --concurrency 1,64 --workloads w1,w1l --runs 1 --w2-workflows 10000 --grpc-compression none --trace-one --keel-bin /var/tmp/ab/keel-nowal --json /var/tmp/ab/w2load/$v-r$r.jsonl > /var/tmp/ab/w2load/$v-r$r.log 2>&1
    echo "$v r$r rc=$? $(grep '^| 3 nodes' $v-r$r.log)"
  done
done
