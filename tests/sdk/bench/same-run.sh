#!/usr/bin/env bash
# Keel and Restate 1.7.12 on the same loads, in one run, alternating system by system and
# round by round (the machine's speed drifts by tens of percent between days, so only
# same-run ratios are evidence). Prints one table: Keel, Restate and their ratio per row.
#
#   bash tests/sdk/bench/same-run.sh            # ROUNDS=2 NODES=3 (env knobs below)
#
# Keel: `keel-workload` (release build; W1 = 10 activities, W1L = 10 local activities, W2 =
# 10,000 × sleep 1 s, completions learnt in-process as the peer's driver learns them from its
# service's stats endpoint) with `--grpc-compression none`. Restate: the peer's own scripts in
# ../shared/bench/restate (run `setup.sh` there once: it installs the npm server and builds
# its service and load generator), in a loopback-only network namespace, so this must run as
# root. Raw JSON lines and the table go to tests/sdk/results/same-run-<date>/ (or $OUT).
#
# Knobs: ROUNDS=2, NODES=3 (1 or 3), CONCURRENCIES="1 16 64", DURATION=20, WARMUP=3,
# W2_N=10000, RESTATE_DIR=<repo>/../shared/bench/restate, BENCH_ROOT=/var/tmp/restate-bench.
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$(pwd)
ROUNDS=${ROUNDS:-2}
NODES=${NODES:-3}
CONCURRENCIES=${CONCURRENCIES:-"1 16 64"}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
W2_N=${W2_N:-10000}
RESTATE_DIR=${RESTATE_DIR:-$root/../shared/bench/restate}
export BENCH_ROOT=${BENCH_ROOT:-/var/tmp/restate-bench}
out="${OUT:-$root/tests/sdk/results/same-run-$(date +%F)}"
mkdir -p "$out"
case "$NODES" in 1) topo=single ;; 3) topo=cluster ;; *) echo "NODES must be 1 or 3" >&2; exit 2 ;; esac
[[ -x "$BENCH_ROOT/target/release/loadgen" ]] || {
  echo "Restate is not set up: run bash $RESTATE_DIR/setup.sh first" >&2; exit 1; }

echo "== building Keel (release)"
cargo build --release --quiet -p keel-server --bin keel
cargo build --release --quiet -p keel-sdk-tests --bin keel-workload
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

cs=$(echo "$CONCURRENCIES" | tr ' ' ',')
git rev-parse --short HEAD > "$out/keel-commit"
for round in $(seq 1 "$ROUNDS"); do
  # Alternate which system goes first, so neither always gets the machine's same phase.
  order="keel restate"; (( round % 2 == 0 )) && order="restate keel"
  for system in $order; do
    echo "== round $round: $system"
    if [[ $system == keel ]]; then
      "$target/release/keel-workload" --keel-bin "$target/release/keel" --nodes "$NODES" \
        --runs 1 --concurrency "$cs" --warmup-secs "$WARMUP" --window-secs "$DURATION" \
        --w2-workflows "$W2_N" --grpc-compression none --json "$out/keel-r$round.jsonl" \
        > "$out/keel-r$round.md"
    else
      REPS=1 DURATION=$DURATION WARMUP=$WARMUP CONCURRENCIES=$CONCURRENCIES \
        W1_TOPOLOGIES=$topo W2_TOPOLOGIES=$topo W2_N=$W2_N RESULTS_DIR="$out/restate-r$round" \
        bash "$RESTATE_DIR/run_bench.sh" > "$out/restate-r$round.log" 2>&1
      rm -f "$out/restate-r$round"/*-n1.log   # the server logs: not results
    fi
  done
done
python3 "$root/tests/sdk/bench/same_run_table.py" "$out" | tee "$out/summary.md"
