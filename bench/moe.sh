#!/usr/bin/env bash
# A LoRA step on a mixture-of-experts model against the dense model of the same active parameters
# (docs/models.md): the SmolLM2-135M shape, and the same shape with Mixtral's sparse MLP (8 experts
# of MLP 768, top-2: 2 × 768 = the dense MLP's 1536 columns per token). The step-time ratio comes
# from one process alternating the two models' steps; peak RSS from one process each.
#   bench/moe.sh                      # batch 4 × 256, 4 measured pairs
#   STEPS=6 BATCH=2 SEQ=128 bench/moe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${RANKTUNE_BUILD_DIR:-build}/bench/ranktune_bench"
STEPS="${STEPS:-4}"
BATCH="${BATCH:-4}"
SEQ="${SEQ:-256}"
THREADS="${THREADS:-2}"
{
  for shape in smollm2 mixtral-smollm2; do
    "$BENCH" --shape "$shape" --threads "$THREADS" train --method lora --steps 2 --warmup 1 --batch "$BATCH" --seq "$SEQ"
  done
  "$BENCH" --shape mixtral-smollm2 --threads "$THREADS" paired --method lora --against-shape smollm2 --steps "$STEPS" \
    --warmup 1 --batch "$BATCH" --seq "$SEQ"
} | /usr/bin/python3 -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin if line.strip()]
single = [r for r in rows if r["bench"] == "train"]
paired = next(r for r in rows if r["bench"] == "paired")
print("| shape | weights MB | peak RSS MB | step s (paired, median) | tokens/s |")
print("| --- | --- | --- | --- | --- |")
tokens = int(sys.argv[1]) * int(sys.argv[2])
for r in single:
    step = paired["median_step_s_" + r["shape"]]
    print("| %s | %.0f | %.0f | %.2f | %.0f |" % (r["shape"], r["base_weight_mb"], r["peak_rss_mb"], step, tokens / step))
print()
print("MoE / dense step time: %.2f (median of %d alternating pairs: %s)"
      % (paired["median_ratio"], len(paired["ratios"]), ", ".join("%.2f" % x for x in paired["ratios"])))
' "$BATCH" "$SEQ"
