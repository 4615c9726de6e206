#!/bin/bash
# Alternating A/B: base (main at 4a7fb2c's server code) vs wm (applied watermark); W1 at C = 1 and 64, 3 nodes.
W=/var/tmp/keel-target/release/keel-workload
for r in 1 2 3; do
  for v in base wm; do
    bin=/var/tmp/ab/keel-$v; [ $v = base ] && bin=/var/tmp/ab/keel-rl
    rm -rf /var/tmp/.tmp*
    TMPDIR=/var/tmp $W --nodes 3 --concurrency 1,64 --workloads w1 --runs 1 --w2-workflows 0 --grpc-compression none --keel-bin $bin --json $v-r$r.jsonl > $v-r$r.log 2>&1
    echo "$v r$r"; grep '^| W1 3 nodes' $v-r$r.log
  done
done
