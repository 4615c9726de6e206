#!/bin/bash
# usage: io.sh variant ; runs W1 C=64 and reports disk bytes written by the keel servers
v=$1
if [ $v = wal ]; then export KEEL_EXP_SM_WAL=1; else unset KEEL_EXP_SM_WAL; fi
TMPDIR=/var/tmp /var/tmp/keel-target/release/keel-workload --nodes 3 --concurrency 64 --workloads w1 --runs 1 --w2-workflows 0 --grpc-compression none --keel-bin /var/tmp/ab/keel-nowal > io-$v.log 2>&1 &
drv=$!
declare -A W
while kill -0 $drv 2>/dev/null; do
  for p in $(pgrep -f "keel-nowal server"); do
    b=$(awk '/^write_bytes/{print $2}' /proc/$p/io 2>/dev/null); [ -n "$b" ] && W[$p]=$b
  done
  sleep 0.5
done
t=0; for p in "${!W[@]}"; do t=$((t+W[$p])); done
echo "$v written_MB=$((t/1048576)) $(grep -E '^\| W1 3 nodes' io-$v.log)"
