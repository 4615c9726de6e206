#!/bin/bash
# W2 after W1 + W1L on the same servers: RocksDB level sizing A/B (KEEL_EXP_LEVEL set = L1 base 32 MiB,
# 8 MiB files; unset = RocksDB defaults 256 MiB / 64 MiB). Captures each node's RocksDB LOG.
W=/var/tmp/keel-target/release/keel-workload
for r in 1 2; do
  for v in base level; do
    if [ $v = level ]; then export KEEL_EXP_LEVEL=1; else unset KEEL_EXP_LEVEL; fi
    rm -rf /var/tmp/.tmp*; d=/var/tmp/ab/level/$v-r$r; mkdir -p $d; rm -f $d/done
    (TMPDIR=/var/tmp $W --nodes 3 --concurrency 1,64 --workloads w1,w1l --runs 1 --w2-workflows 10000 --grpc-compression none --trace-one --keel-bin /var/tmp/ab/keel-level --json $d/run.jsonl > $d/run.log 2>&1; touch $d/done) &
    while [ ! -f $d/done ]; do for n in 1 2 3; do f=$(ls /var/tmp/.tmp*/node$n/db/LOG 2>/dev/null | head -1); [ -n "$f" ] && cp $f $d/node$n.LOG 2>/dev/null; done; sleep 0.5; done
    cpu=$(cat $d/node*.LOG | grep -o '"compaction_time_cpu_micros": [0-9]*' | awk '{s+=$2; if ($2>m) m=$2} END {printf "compaction cpu %.0f ms (max one %.0f ms)", s/1000, m/1000}')
    echo "$v r$r $cpu $(grep '^| 3 nodes' $d/run.log)"
  done
done
