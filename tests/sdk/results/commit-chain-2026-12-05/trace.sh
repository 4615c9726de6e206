#!/bin/bash
# usage: trace.sh BIN OUTDIR
bin=$1 out=$2; mkdir -p $out; here=$(dirname "$(readlink -f "$0")"); cd $out && rm -f done node*.log; rm -rf /var/tmp/.tmp*
(KEEL_TRACE_COMMIT=1 TMPDIR=/var/tmp /var/tmp/keel-target/release/keel-workload --nodes 3 --concurrency 1 --workloads w1 --runs 1 --w2-workflows 0 --grpc-compression none --keel-bin $bin --json run.jsonl > run.log 2>&1; touch done) &
while [ ! -f $out/done ]; do for n in 1 2 3; do f=$(ls /var/tmp/.tmp*/node$n.log 2>/dev/null | head -1); [ -n "$f" ] && cp $f $out/node$n.log; done; sleep 2; done
grep "^| W1" $out/run.log
python3 "$here/an2.py" $out
