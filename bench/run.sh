#!/usr/bin/env bash
# Runs the benchmarks side by side — ranktune and the eager-PyTorch peer alternately (A B A B ...)
# so both see the same machine state — writes bench/results/latest.jsonl and regenerates
# docs/benchmarks.md (+ docs/benchmarks.svg). With LLAMA_CPP_DIR (a llama.cpp checkout), llama.cpp
# is built and measured too, for generation (bench/peers/llamacpp.sh), in the same rounds.
# bf16 beside fp32: the LoRA step under CPU autocast (train.precision: bf16), in its own process and
# alternating with the fp32 step in one (`paired --against-precision`), and batch-1 decoding with
# the merged model held in bf16 (against llama.cpp's BF16 GGUF of the same weights).
#   bench/run.sh                 # SmolLM2-135M shape, 3 rounds (~20-30 minutes on 2 cores)
#   ROUNDS=1 SHAPE=tiny bench/run.sh
#   LLAMA_CPP_DIR=~/src/llama.cpp bench/run.sh
#   ONLY=generation bench/run.sh # the generation figures alone (decode, batched, prefill)
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

ONLY="${ONLY:-all}"
LLAMA="${LLAMA_CPP_DIR:+bench/peers/llamacpp.sh}"
if [ -n "$LLAMA" ]; then
  "$LLAMA" prepare  # builds llama.cpp once, writes the F32 and BF16 GGUFs and checks their logits against ranktune's
fi

for round in $(seq 1 "$ROUNDS"); do
  [ "$ONLY" = generation ] || for method in lora dora full; do
    run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" train --method "$method" --steps "$STEPS"
    [ "$method" != lora ] ||
      run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" --precision bf16 train --method lora --steps "$STEPS"
    run "$round" /usr/bin/python3 "$PEER" train --shape "$SHAPE" --threads "$THREADS" --method "$method" --steps "$STEPS"
  done
  # DoRA against LoRA with their steps alternating in one process (steady against drift)
  [ "$ONLY" = generation ] || run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" paired --method dora --steps "$STEPS"
  # the fp32 LoRA step against the bf16 one, likewise
  [ "$ONLY" = generation ] ||
    run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" paired --method lora --against-precision bf16 --steps "$STEPS"
  run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" decode
  [ "$ONLY" = generation ] || run "$round" /usr/bin/python3 "$PEER" decode --shape "$SHAPE" --threads "$THREADS"
  run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" decode --merged
  run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" decode --merged --dtype bf16
  for batch in 8 16; do
    run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" decode --merged --batch "$batch"
  done
  run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" decode --merged --batch 16 --ragged
  run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" decode --merged --batch 16 --group 4
  run "$round" "$BENCH" --shape "$SHAPE" --threads "$THREADS" prefill --merged --prompt 512
  if [ -n "$LLAMA" ]; then
    echo "round $round: $LLAMA measure" >&2
    "$LLAMA" measure | /usr/bin/python3 -c "import json,sys
for l in sys.stdin:
    r = json.loads(l); r['round'] = $round; print(json.dumps(r))" >>"$OUT"
  fi
done
/usr/bin/python3 bench/report.py "$OUT" docs/benchmarks.md docs/benchmarks.svg
echo "results: $OUT; report: docs/benchmarks.md" >&2
