#!/usr/bin/env bash
# Data parallelism on one machine (docs/distributed.md): tokens/s of 1 worker × T threads against
# N workers × T/N threads on the SmolLM2-135M shape (random weights, the quickstart's data and
# tokenizer, LoRA r=16 on every linear layer, the same global batch), and the gradient all-reduce
# time per step. Alternates the two configurations ROUNDS times; prints one JSON line per run and
# a summary. Writes nothing in the repository.
#   bench/distributed.sh                         # 2 cores: 1 x 2 threads vs 2 x 1 thread, 8 steps, 2 rounds
#   STEPS=4 ROUNDS=1 bench/distributed.sh        # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
RANKTUNE="${RANKTUNE_BUILD_DIR:-build}/ranktune"
WORKERS="${WORKERS:-2}"
THREADS="${THREADS:-2}"       # cores used in total
STEPS="${STEPS:-8}"
ROUNDS="${ROUNDS:-2}"
BATCH="${BATCH:-8}"           # global batch
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The SmolLM2-135M shape with the quickstart's tokenizer (its ids fit the larger vocabulary).
mkdir -p "$WORK/model"
cp examples/gsm8k/quickstart/model/tokenizer*.json "$WORK/model/"
/usr/bin/python3 - "$WORK/model/config.json" <<'PY'
import json, sys
config = json.load(open("examples/gsm8k/quickstart/model/config.json"))
config.update(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
              num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048, rope_theta=100000.0)
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
COMMON=(model.path="$WORK/model" adapter.r=16 adapter.lora_alpha=32 adapter.target_modules=all-linear
        adapter.modules_to_save=null adapter.ensure_weight_tying=false train.max_steps="$STEPS" train.log_every=1
        train.eval_every=0 train.save_every=0 eval.max_new_tokens=0 data.max_length=256 train.overwrite_output_dir=true)

summarise() {  # run directory, label -> one JSON line: tokens/s and all-reduce seconds over steps 2..
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, os, sys
run, label = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if '"loss"' in l][1:]  # step 1 warms up
tps = sum(r["tokens_per_second"] for r in rows) / len(rows)
reduce = [r["allreduce_seconds"] for r in rows if "allreduce_seconds" in r]
size = os.path.getsize(os.path.join(run, "adapter_model.safetensors"))
print(json.dumps({"config": label, "steps_measured": len(rows), "tokens_per_second": round(tps, 1),
                  "allreduce_seconds_per_step": round(sum(reduce) / len(reduce), 5) if reduce else None,
                  "adapter_bytes": size}))
PY
}

for round in $(seq 1 "$ROUNDS"); do
  "$RANKTUNE" train examples/gsm8k/quickstart.yaml "${COMMON[@]}" train.batch_size="$BATCH" train.threads="$THREADS" \
    train.output_dir="$WORK/one" >"$WORK/one.log" 2>&1 || { tail -5 "$WORK/one.log"; exit 1; }
  summarise "$WORK/one" "1 worker x $THREADS threads" | tee -a "$WORK/results.jsonl"
  "$RANKTUNE" train --nproc-per-node "$WORKERS" examples/gsm8k/quickstart.yaml "${COMMON[@]}" \
    train.batch_size=$((BATCH / WORKERS)) train.threads=$((THREADS / WORKERS > 0 ? THREADS / WORKERS : 1)) \
    train.output_dir="$WORK/many" >"$WORK/many.log" 2>&1 || { tail -5 "$WORK/many.log"; exit 1; }
  summarise "$WORK/many" "$WORKERS workers x $((THREADS / WORKERS > 0 ? THREADS / WORKERS : 1)) threads" | tee -a "$WORK/results.jsonl"
done
/usr/bin/python3 - "$WORK/results.jsonl" <<'PY'
import json, sys
from collections import defaultdict
by = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    by[r["config"]].append(r)
for config, rows in by.items():
    tps = sorted(r["tokens_per_second"] for r in rows)
    reduce = [r["allreduce_seconds_per_step"] for r in rows if r["allreduce_seconds_per_step"] is not None]
    print(f"{config}: median {tps[len(tps) // 2]:.0f} tokens/s over {len(rows)} run(s)"
          + (f", all-reduce {1000 * sum(reduce) / len(reduce):.1f} ms/step" if reduce else ""))
PY
