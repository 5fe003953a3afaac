#!/usr/bin/env bash
# A LoRA step on a quantized frozen base (QLoRA): peak RSS, base weight memory and step time with
# fp32, int8, nf4 and nf4 + double quantisation, one process each (docs/quantization.md).
#   bench/quantized.sh                         # SmolLM2-135M shape, 4 measured steps each
#   SHAPE=qwen2.5-1.5b STEPS=6 bench/quantized.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${RANKTUNE_BUILD_DIR:-build}/bench/ranktune_bench"
SHAPE="${SHAPE:-smollm2}"
STEPS="${STEPS:-4}"
BATCH="${BATCH:-4}"
SEQ="${SEQ:-256}"
THREADS="${THREADS:-2}"
{
  for quantize in none int8 nf4 "nf4 --double-quant"; do
    # shellcheck disable=SC2086  # "nf4 --double-quant" is two arguments on purpose
    "$BENCH" --shape "$SHAPE" --threads "$THREADS" --quantize $quantize train --method lora --steps "$STEPS" --warmup 1 \
      --batch "$BATCH" --seq "$SEQ"
  done
} | /usr/bin/python3 -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin if line.strip()]
print("| base | base weights MB | peak RSS MB | step s | tokens/s | loss |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    q, base, rss, step, tps, loss = (r[k] for k in ("quantize", "base_weight_mb", "peak_rss_mb", "median_step_s", "tokens_per_s", "loss"))
    print(f"| {q} | {base:.0f} | {rss:.0f} | {step:.2f} | {tps:.0f} | {loss:.4f} |")
'
