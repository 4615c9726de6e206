#!/usr/bin/env bash
# Alternating A/B of two keel server binaries: keel bench raft (commit latency/throughput) and
# keel-workload W1 (C=1,64) + W2 on 3 nodes. Usage: ab.sh ROUNDS
set -u
cd /var/tmp/ab
R=${1:-2}
for r in $(seq 1 "$R"); do
  if (( r % 2 == 1 )); then order="main or10"; else order="or10 main"; fi
  for v in $order; do
    echo "== round $r $v raft" >&2
    ./keel-$v bench raft --concurrency 1,16,64 --seconds 8 --warmup 2 > raft-$v-r$r.jsonl 2> raft-$v-r$r.err
    echo "== round $r $v workload" >&2
    TMPDIR=/var/tmp ./keel-workload --keel-bin ./keel-$v --nodes 3 --concurrency 1,64 --workloads w1 \
      --w2-workflows 10000 --runs 1 --window-secs 15 --warmup-secs 3 --grpc-compression none \
      --json wl-$v-r$r.jsonl > wl-$v-r$r.md 2> wl-$v-r$r.err
  done
done
