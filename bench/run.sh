#!/usr/bin/env bash
# Runs the benchmarks side by side — ranktune and the eager-PyTorch peer alternately (A B A B ...)
# so both see the same machine state — writes bench/results/latest.jsonl and regenerates
# docs/benchmarks.md (+ docs/benchmarks.svg).
#   bench/run.sh                 # SmolLM2-135M shape, 3 rounds (~20-30 minutes on 2 cores)
#   ROUNDS=1 SHAPE=tiny bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
BENCH="${RANKTUNE_BUILD_DIR:-build}/bench/ranktune_bench"
PEER=bench/peers/peer.py
SHAPE="${SHAPE:-smollm2}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-2}"
STEPS="${STEPS:-6}"
OUT=bench/results/latest.jsonl
mkdir -p bench/results
: >"$OUT"

run() {  # one configuration, one process; the JSON line is tagged with the round
  local round="$1"
  shift
  echo "round $round: $*" >&2
  "$@" | /usr/bin/python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['round']=$round; print(json.dumps(r))" >>"$OUT"
}

for round in $(seq 1 "$ROUNDS"); do
  for method in lora dora full; do
    run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" train --method "$method" --steps "$STEPS"
    run "$round" /usr/bin/python3 "$PEER" train --shape "$SHAPE" --threads "$THREADS" --method "$method" --steps "$STEPS"
  done
  # DoRA against LoRA with their steps alternating in one process (steady against drift)
  run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" paired --method dora --steps "$STEPS"
  run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" decode
  run "$round" /usr/bin/python3 "$PEER" decode --shape "$SHAPE" --threads "$THREADS"
  run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" decode --merged
done
/usr/bin/python3 bench/report.py "$OUT" docs/benchmarks.md docs/benchmarks.svg
echo "results: $OUT; report: docs/benchmarks.md" >&2
