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
  # Step time against fp32 with both models in one process, steps alternating: robust to a machine
  # whose speed drifts between processes.
  for quantize in int8 nf4 "nf4 --double-quant"; do
    # shellcheck disable=SC2086
    "$BENCH" --shape "$SHAPE" --threads "$THREADS" --quantize $quantize paired --method lora --against-quantize none \
      --steps "$STEPS" --warmup 1 --batch "$BATCH" --seq "$SEQ"
  done
} | /usr/bin/python3 -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin if line.strip()]
ratio = {r["method"].split("/")[0]: r["median_ratio"] for r in rows if r["bench"] == "paired"}
print("| base | base weights MB | peak RSS MB | step s | tokens/s | step / fp32 step (paired) | loss |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    if r["bench"] != "train":
        continue
    q, base, rss, step, tps, loss = (r[k] for k in ("quantize", "base_weight_mb", "peak_rss_mb", "median_step_s", "tokens_per_s", "loss"))
    paired = "1" if q == "none" else ("%.2f" % ratio[q] if q in ratio else "-")
    print(f"| {q} | {base:.0f} | {rss:.0f} | {step:.2f} | {tps:.0f} | {paired} | {loss:.4f} |")
'
