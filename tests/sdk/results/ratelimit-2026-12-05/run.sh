#!/bin/bash
# W2 after W1 + W1L on the same servers: RocksDB rate limiter A/B (KEEL_EXP_RATELIMIT_MBPS = MB/s
# for flush + compaction writes; unset = no limiter). Captures each node's RocksDB LOG.
# usage: run.sh BIN ROUNDS "VARIANTS" OUT   (variant "base" or a number of MB/s)
bin=$1 rounds=$2 order=$3 out=$4
W=/var/tmp/keel-target/release/keel-workload
for r in $(seq 1 "$rounds"); do
  for v in $order; do
    if [ "$v" = base ]; then unset KEEL_EXP_RATELIMIT_MBPS; else export KEEL_EXP_RATELIMIT_MBPS=$v; fi
    rm -rf /var/tmp/.tmp*; d=$out/$v-r$r; mkdir -p $d; rm -f $d/done
    (TMPDIR=/var/tmp $W --nodes 3 --concurrency 1,64 --workloads w1,w1l --runs 1 --w2-workflows 10000 --grpc-compression none --trace-one --keel-bin $bin --json $d/run.jsonl > $d/run.log 2>&1; touch $d/done) &
    while [ ! -f $d/done ]; do for n in 1 2 3; do f=$(ls /var/tmp/.tmp*/node$n/db/LOG 2>/dev/null | head -1); [ -n "$f" ] && cp $f $d/node$n.LOG 2>/dev/null; done; sleep 0.5; done
    cpu=$(cat $d/node*.LOG | grep -o '"compaction_time_cpu_micros": [0-9]*' | awk '{s+=$2; if ($2>m) m=$2} END {printf "compaction cpu %.0f ms (max one %.0f ms)", s/1000, m/1000}')
    echo "$v r$r $cpu"; grep '^| 3 nodes\|^| W' $d/run.log | grep -v "workload |"
  done
done
