#!/usr/bin/env bash
# End-to-end checks of `ranktune sample` on stories260k (../shared): a short rejection-sampling run
# writes prompt/completion records and a summary, `ranktune train` trains on them, and bad input
# names the key or file and writes nothing.
#   tests/cli/sample_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
RANKTUNE="$1/ranktune"
cd "$2" || exit 1
MODEL=../shared/models/stories260k
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "skip: needs $MODEL"
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failures=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }

# One recipe for both steps: `sample` reads sample.*, `train` trains on sample.output.
cat >"$WORK/recipe.yaml" <<YAML
model: {path: $PWD/$MODEL}
template: $PWD/tests/data/sample/story-name.yaml
data: {train_file: $WORK/samples.jsonl, format: prompt_completion, validation_size: 0, max_length: 64}
sample:
  file: $PWD/tests/data/sample/stories.jsonl
  output: $WORK/samples.jsonl
  num_samples: 6
  batch_size: 6
  max_new_tokens: 8
  temperature: 0.7
  seed: 1
adapter: {r: 4, lora_alpha: 8, target_modules: all-linear}
train: {output_dir: $WORK/run, max_steps: 3, batch_size: 2, log_every: 1, threads: 1}
eval: {max_new_tokens: 0}
YAML

# ---- a sampling run, then training on what it kept ---------------------------------------------------
if "$RANKTUNE" sample "$WORK/recipe.yaml" >"$WORK/sample.out" 2>"$WORK/sample.err"; then
  kept=$(wc -l <"$WORK/samples.jsonl")
  /usr/bin/python3 - "$WORK/samples.jsonl" "$WORK/samples.summary.json" "$kept" <<'PY' && pass "sample writes $kept prompt/completion records and a consistent summary" || fail "records or summary"
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
summary = json.load(open(sys.argv[2]))
assert summary["questions"] == 3 and summary["samples"] == 18 and summary["samples_per_question"] == 6, summary
assert summary["kept"] == len(records) == int(sys.argv[3]) > 0, summary
assert summary["kept"] <= summary["correct"] and 0 < summary["pass_at_1"] <= summary["pass_at_6"] <= 1, summary
for r in records:
    assert r["prompt"] == r["question"], r                        # a plain "{question}" prompt
    assert r["completion"].split()[0] == r["gold"], r             # correct: the name, as the reward says
    assert set(r) == {"prompt", "completion", "question", "gold", "reward", "sample"}, r
pairs = [(r["question"], r["completion"]) for r in records]
assert len(pairs) == len(set(pairs)), "all_correct drops duplicates"
PY
  grep -q '"pass_at_6"' "$WORK/sample.out" && pass "the summary is printed" || fail "stdout: $(cat "$WORK/sample.out")"
  if "$RANKTUNE" train "$WORK/recipe.yaml" >"$WORK/train.log" 2>&1 && [ -s "$WORK/run/adapter_model.safetensors" ]; then
    pass "ranktune train trains on the sampled records"
  else
    fail "train on samples: $(tail -3 "$WORK/train.log")"
  fi
else
  fail "sample failed: $(tail -3 "$WORK/sample.err")"
fi

# ---- modes: first_correct keeps at most one per question ---------------------------------------------
"$RANKTUNE" sample "$WORK/recipe.yaml" sample.keep=first_correct sample.output="$WORK/first.jsonl" >/dev/null 2>&1 &&
  [ "$(wc -l <"$WORK/first.jsonl")" -le 3 ] && [ "$(wc -l <"$WORK/first.jsonl")" -ge 1 ] &&
  pass "first_correct keeps one record per answered question" || fail "first_correct"

# ---- bad input names the key or file, writes nothing -------------------------------------------------
check_error() {  # name, expected text, args...
  local name="$1" expected="$2"
  shift 2
  if "$RANKTUNE" sample "$WORK/recipe.yaml" sample.output="$WORK/never.jsonl" "$@" >"$WORK/err.out" 2>&1; then
    fail "$name: succeeded"
  elif grep -q -- "$expected" "$WORK/err.out" && [ ! -e "$WORK/never.jsonl" ]; then
    pass "$name"
  else
    fail "$name: $(cat "$WORK/err.out")"
  fi
}
check_error "unknown sample.keep is refused" "sample.keep" sample.keep=most_correct
check_error "a missing questions file is named" "no-such-questions.jsonl" sample.file="$WORK/no-such-questions.jsonl"
check_error "num_samples 0 is refused" "sample.num_samples" sample.num_samples=0
check_error "a missing adapter is named" "sample.adapter" sample.adapter="$WORK/no-adapter"
"$RANKTUNE" sample "$WORK/recipe.yaml" sample.output= >"$WORK/err.out" 2>&1
grep -q "sample.output" "$WORK/err.out" && pass "an unset sample.output is refused" || fail "no output: $(cat "$WORK/err.out")"

[ "$failures" -eq 0 ] && echo "all sample checks passed" || echo "$failures sample check(s) failed"
exit "$failures"
