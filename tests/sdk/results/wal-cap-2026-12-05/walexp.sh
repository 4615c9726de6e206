#!/bin/bash
# usage: walexp.sh KEEL_BIN OUT_PREFIX
bin=$1 out=$2
rm -rf /var/tmp/crash-node3
TMPDIR=/var/tmp timeout 300 /var/tmp/keel-target/release/keel-workload --nodes 3 --concurrency 64 --workloads w1 --runs 1 --w2-workflows 0 --grpc-compression none --warmup-secs 5 --window-secs 50 --keel-bin $bin --json /tmp/walexp.json > $out.workload.log 2>&1 &
sleep 50
d=$(ls -d /var/tmp/.tmp*/ | head -1)
pid=$(pgrep -f "node3.toml")
kill -9 $pid; sleep 1
cp -a $d/node3 /var/tmp/crash-node3
sed "s#data-dir = \".*\"#data-dir = \"/var/tmp/crash-node3\"#" $d/node3.toml > /var/tmp/crash-node3.toml
echo "WAL files: $(ls /var/tmp/crash-node3/db/*.log | wc -l), $(du -ch /var/tmp/crash-node3/db/*.log | tail -1)" > $out.txt
wait
rm -rf /var/tmp/.tmp*
for i in 1 2 3; do
  start=$(date +%s.%N)
  $bin server --config /var/tmp/crash-node3.toml > $out.server$i.log 2>&1 &
  spid=$!
  for k in $(seq 1 600); do grep -q "node serving" $out.server$i.log && break; sleep 0.05; done
  end=$(date +%s.%N)
  echo "open $i: $(echo "$end - $start" | bc) s" >> $out.txt
  kill -9 $spid; wait $spid 2>/dev/null
done
cat $out.txt
