#!/bin/bash
B=/var/tmp/keel-target/release/keel-workload
run() { name=$1; shift; env "$@" $B --nodes 3 --concurrency 64 --workloads w1 --runs 1 --w2-workflows 0 --grpc-compression none --window-secs 20 --json /var/tmp/rss/$name.json > /var/tmp/rss/$name.out 2>&1; echo "$name $(jq -r '[.workflows_per_sec,.server_rss_mib,.server_cpu_ms_per_wf]|@tsv' /var/tmp/rss/$name.json)"; }
for r in $ROUNDS; do
  run m16_$r X=1
  run m8_$r KEEL_EXP_SM_MIB=8 KEEL_EXP_LOG_MIB=8
  run m4_$r KEEL_EXP_SM_MIB=8 KEEL_EXP_LOG_MIB=4
  run m8a_$r KEEL_EXP_SM_MIB=8 KEEL_EXP_LOG_MIB=8 GLIBC_TUNABLES=glibc.malloc.arena_max=2
done
