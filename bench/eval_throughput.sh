#!/usr/bin/env bash
# GSM8K evaluation throughput: `ranktune eval` with the 8-shot chain-of-thought template (~900
# prompt tokens per question) and eval.samples=8 (self-consistency), on the SmolLM2-135M shape with
# random weights and GPT-2's tokenizer from ../shared (vocabulary 50257, near SmolLM2's 49152).
# Random weights never stop early, so every completion runs to eval.max_new_tokens: the worst case,
# and the same work for every build. Prints questions per minute, one JSON row per run.
#   bench/eval_throughput.sh                               # 4 questions, 64 new tokens, 2 threads
#   QUESTIONS=8 NEW_TOKENS=128 bench/eval_throughput.sh
#   RANKTUNE=/path/to/other/ranktune bench/eval_throughput.sh   # another build, for before/after
#   LABEL=after bench/eval_throughput.sh   # also appends the row, labelled, to bench/results/eval_throughput.jsonl,
#                                          # which bench/report.py puts in docs/benchmarks.md (before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
RANKTUNE="${RANKTUNE:-${RANKTUNE_BUILD_DIR:-build}/ranktune}"
SHARED="${RANKTUNE_SHARED_DIR:-../shared}"
QUESTIONS="${QUESTIONS:-4}"
NEW_TOKENS="${NEW_TOKENS:-64}"
SAMPLES="${SAMPLES:-8}"
THREADS="${THREADS:-2}"
[ -f "$SHARED/data/gsm8k/test.jsonl" ] || { echo "eval_throughput: $SHARED/data/gsm8k/test.jsonl is missing (../shared)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=bench/lib/smollm2_dir.sh
. bench/lib/smollm2_dir.sh
make_smollm2_dir "$WORK/model" "$SHARED"
cat >"$WORK/recipe.yaml" <<YAML
model: {path: $WORK/model, init_seed: 0}
template: gsm8k-8shot
data: {train_file: $SHARED/data/gsm8k/test.jsonl}   # required by the recipe; eval reads eval.file
train: {output_dir: $WORK/run, threads: $THREADS}
eval: {file: $SHARED/data/gsm8k/test.jsonl, limit: $QUESTIONS, adapter: none, batch_size: 8,
       max_new_tokens: $NEW_TOKENS, samples: $SAMPLES}
YAML
start=$(date +%s.%N)
"$RANKTUNE" eval "$WORK/recipe.yaml" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
end=$(date +%s.%N)
/usr/bin/python3 -c '
import json, sys
questions, samples, new_tokens, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
row = {"bench": "eval", "template": "gsm8k-8shot", "questions": questions, "samples": samples,
       "max_new_tokens": new_tokens, "seconds": seconds, "questions_per_minute": 60 * questions / seconds}
if sys.argv[5]:
    row["label"] = sys.argv[5]
    with open(sys.argv[6], "a") as f:
        f.write(json.dumps(row) + "\n")
print(json.dumps(row))
' "$QUESTIONS" "$SAMPLES" "$NEW_TOKENS" "$(echo "$end - $start" | bc)" "${LABEL:-}" "${OUT:-bench/results/eval_throughput.jsonl}"
