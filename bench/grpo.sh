#!/usr/bin/env bash
# A GRPO step, ranktune against the eager peer (bench/peers/grpo_peer.py: what TRL's GRPOTrainer does
# without vLLM), on the SmolLM2-135M shape with random weights and GPT-2's tokenizer: 4 GSM8K prompts
# (gsm8k-cot template) × G=8 completions of 128 new tokens (random weights never stop early), LoRA
# r=16 on every projection, 4 micro-batches of 8 completions, one optimizer step, beta 0 (BETA= for
# the reference pass). Both get the same prompt ids. Prints one JSON row per implementation and the
# ratios; peak RSS is each process's own.
#   bench/grpo.sh                   # 3 steps, the first not measured
#   STEPS=2 NEW_TOKENS=64 bench/grpo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RANKTUNE="${RANKTUNE:-${RANKTUNE_BUILD_DIR:-build}/ranktune}"
PYTHON_BUILD="${RANKTUNE_BUILD_DIR:-build}/python"
SHARED="${RANKTUNE_SHARED_DIR:-../shared}"
STEPS="${STEPS:-3}"
NEW_TOKENS="${NEW_TOKENS:-128}"
THREADS="${THREADS:-2}"
BETA="${BETA:-0.0}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=bench/lib/smollm2_dir.sh
. bench/lib/smollm2_dir.sh
make_smollm2_dir "$WORK/model" "$SHARED"
head -n $((4 * STEPS)) "$SHARED/data/gsm8k/train.jsonl" >"$WORK/questions.jsonl"
cat >"$WORK/recipe.yaml" <<YAML
model: {path: $WORK/model, init_seed: 0}
data: {train_file: $WORK/questions.jsonl, validation_size: 0}
template: gsm8k-cot
adapter: {method: lora, r: 16, lora_alpha: 32, target_modules: all-linear}
train: {output_dir: $WORK/run, max_steps: $STEPS, batch_size: 8, gradient_accumulation_steps: 4, lr: 1.0e-6,
        log_every: 1, save_every: 0, threads: $THREADS, seed: 1}
grpo: {num_generations: 8, max_completion_length: $NEW_TOKENS, temperature: 1.0, beta: $BETA,
       reward_funcs: [accuracy, format]}
YAML
# The prompts ranktune renders, as ids, for the peer.
PYTHONPATH="$PYTHON_BUILD" /usr/bin/python3 - "$WORK" <<'PY'
import json, sys
import ranktune
work = sys.argv[1]
tok = ranktune.AutoTokenizer.from_pretrained(work + "/model")
tpl = ranktune.templates.load("gsm8k-cot")
questions = [json.loads(line)["question"] for line in open(work + "/questions.jsonl")]
ids = [tok.encode(tpl.render_prompt(q), add_special_tokens=not tpl.text_has_bos) for q in questions]
json.dump(ids, open(work + "/prompts.json", "w"))
PY
/usr/bin/time -f "%M" -o "$WORK/rss" "$RANKTUNE" grpo "$WORK/recipe.yaml" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
/usr/bin/python3 bench/peers/grpo_peer.py --shape smollm2 --vocab 50257 --prompts-file "$WORK/prompts.json" \
  --steps $((STEPS - 1)) --warmup 1 --new-tokens "$NEW_TOKENS" --threads "$THREADS" --beta "$BETA" >"$WORK/peer.json"
/usr/bin/python3 - "$WORK" "$NEW_TOKENS" <<'PY'
import json, statistics, sys
work, new_tokens = sys.argv[1], int(sys.argv[2])
rows = [json.loads(line) for line in open(work + "/run/metrics.jsonl") if '"rollout_seconds"' in line][1:]  # step 1: warm-up
rollout = statistics.median(r["rollout_seconds"] for r in rows)
train = statistics.median(r["train_seconds"] for r in rows)
ours = {"impl": "ranktune", "bench": "grpo", "median_step_s": rollout + train, "rollout_s": rollout, "train_s": train,
        "rollout_tokens_per_s": statistics.median(r["rollout_tokens_per_second"] for r in rows),
        "train_tokens_per_s": statistics.median(r["train_tokens_per_second"] for r in rows),
        "step_tokens_per_s": 32 * new_tokens / (rollout + train), "rollout_share": rollout / (rollout + train),
        "peak_rss_mb": int(open(work + "/rss").read().split()[-1]) / 1024, "steps": len(rows)}
peer = json.load(open(work + "/peer.json"))
print(json.dumps(ours))
print(json.dumps(peer))
print(json.dumps({"bench": "grpo-ratio", "step_throughput": ours["step_tokens_per_s"] / peer["step_tokens_per_s"],
                  "rollout_throughput": ours["rollout_tokens_per_s"] / peer["rollout_tokens_per_s"],
                  "peak_rss": ours["peak_rss_mb"] / peer["peak_rss_mb"]}))
PY
