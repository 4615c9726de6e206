#!/bin/bash
# alternating A/B: wal (KEEL_EXP_SM_WAL=1) vs nowal, same binary
W=/var/tmp/keel-target/release/keel-workload
for r in 1 2 3; do
  for v in wal nowal; do
    if [ $v = wal ]; then export KEEL_EXP_SM_WAL=1; else unset KEEL_EXP_SM_WAL; fi
    TMPDIR=/var/tmp $W --nodes 3 --concurrency 1,64 --workloads w1 --runs 1 --w2-workflows 10000 --grpc-compression none --keel-bin /var/tmp/ab/keel-nowal --json /var/tmp/ab/nowal/$v.jsonl > /var/tmp/ab/nowal/$v-r$r.log 2>&1
    echo "$v r$r rc=$?"
  done
done
