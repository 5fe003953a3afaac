#!/usr/bin/env bash
# End-to-end checks of `ranktune train` and `ranktune eval` on the quickstart recipe (everything it
# needs is in the repository): the run's files, DoRA, bad recipes that must write nothing, Ctrl-C,
# and a run killed with SIGKILL that resumes to bit-identical adapter weights.
#   tests/cli/train_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
RANKTUNE="$1/ranktune"
cd "$2" || exit 1
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failures=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }
RECIPE=examples/gsm8k/quickstart.yaml
# Small and quick: the checks are about behaviour, not quality.
QUICK=(train.max_steps=20 train.log_every=5 train.eval_every=10 train.save_every=10 eval.limit=6 eval.max_new_tokens=24 eval.during_training=2 train.threads=1)

# ---- a whole run ---------------------------------------------------------------------------------
if "$RANKTUNE" train "$RECIPE" "${QUICK[@]}" train.output_dir="$WORK/run" >"$WORK/run.log" 2>&1; then
  missing=""
  for f in adapter_config.json adapter_model.safetensors metrics.jsonl training-curve.svg predictions.jsonl summary.json config.yaml; do
    [ -s "$WORK/run/$f" ] || missing="$missing $f"
  done
  [ -z "$missing" ] && pass "quickstart run writes every output file" || fail "quickstart run lacks:$missing"
  grep -q '"status": "completed"' "$WORK/run/summary.json" && pass "summary says completed" || fail "summary: $(cat "$WORK/run/summary.json")"
  [ "$(wc -l <"$WORK/run/predictions.jsonl")" -eq 6 ] && pass "one prediction per question" || fail "predictions.jsonl lines"
  ls -d "$WORK/run"/checkpoint-* >/dev/null 2>&1 && pass "checkpoints kept" || fail "no checkpoint directory"
else
  fail "quickstart run failed: $(tail -5 "$WORK/run.log")"
fi

"$RANKTUNE" eval "$RECIPE" train.output_dir="$WORK/run" eval.limit=4 eval.max_new_tokens=16 eval.output_dir="$WORK/eval" >"$WORK/eval.log" 2>&1 &&
  [ -s "$WORK/eval/predictions.jsonl" ] && [ -s "$WORK/eval/eval-summary.json" ] && pass "eval writes predictions and a summary" ||
  fail "eval: $(tail -3 "$WORK/eval.log")"

"$RANKTUNE" train "$RECIPE" "${QUICK[@]}" train.max_steps=4 eval.max_new_tokens=0 adapter.method=dora train.output_dir="$WORK/dora" >"$WORK/dora.log" 2>&1 &&
  grep -q lora_magnitude_vector "$WORK/dora/adapter_model.safetensors" && pass "DoRA run saves magnitudes" || fail "dora: $(tail -3 "$WORK/dora.log")"

# ---- bad recipes write nothing -----------------------------------------------------------------------
sed 's/  batch_size: 8/  bacth_size: 8/' "$RECIPE" >"$WORK/typo.yaml"
"$RANKTUNE" train "$WORK/typo.yaml" train.output_dir="$WORK/typo-run" >"$WORK/typo.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "typo.yaml:[0-9]*: 'train.bacth_size': unknown key (did you mean 'batch_size'?)" "$WORK/typo.log" && [ ! -e "$WORK/typo-run" ]; then
  pass "misspelt key: error with file, line and suggestion; nothing written"
else
  fail "misspelt key (rc $rc): $(cat "$WORK/typo.log")"
fi
"$RANKTUNE" train "$RECIPE" data.train_file="$WORK/no-such.jsonl" train.output_dir="$WORK/nodata-run" >"$WORK/nodata.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "no-such.jsonl: file not found" "$WORK/nodata.log" && [ ! -e "$WORK/nodata-run" ]; then
  pass "missing data file: error names it; nothing written"
else
  fail "missing data (rc $rc): $(cat "$WORK/nodata.log")"
fi

grep -v '^  target_modules:' "$RECIPE" >"$WORK/no-targets.yaml"
"$RANKTUNE" train "$WORK/no-targets.yaml" train.output_dir="$WORK/no-targets-run" >"$WORK/no-targets.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "no-targets.yaml: 'adapter.target_modules': is not set" "$WORK/no-targets.log" && [ ! -e "$WORK/no-targets-run" ]; then
  pass "adapters without target_modules: error naming the key; nothing written"
else
  fail "no target_modules (rc $rc): $(cat "$WORK/no-targets.log")"
fi
"$RANKTUNE" train "$RECIPE" adapter.method=dora adapter.use_dora=false train.output_dir="$WORK/contra-run" >"$WORK/contra.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "'adapter.method': is dora.*adapter.use_dora is false" "$WORK/contra.log" && [ ! -e "$WORK/contra-run" ]; then
  pass "adapter.method=dora with adapter.use_dora=false: error naming both keys; nothing written"
else
  fail "dora/use_dora contradiction (rc $rc): $(cat "$WORK/contra.log")"
fi

# ---- Ctrl-C saves a checkpoint and exits cleanly -----------------------------------------------------
"$RANKTUNE" train "$RECIPE" "${QUICK[@]}" train.max_steps=100000 train.save_every=0 eval.max_new_tokens=0 train.output_dir="$WORK/sigint" >"$WORK/sigint.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q '"step":5' "$WORK/sigint/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 130 ] && ls -d "$WORK/sigint"/checkpoint-* >/dev/null 2>&1 && grep -q "status: interrupted" "$WORK/sigint.log"; then
  pass "Ctrl-C: checkpoint saved, exit code 130"
else
  fail "Ctrl-C (rc $rc): $(tail -3 "$WORK/sigint.log")"
fi

# ---- SIGKILL and resume: bit-identical to an uninterrupted run -----------------------------------
RESUME=(train.max_steps=40 train.save_every=10 train.keep_last=5 eval.max_new_tokens=0 train.eval_every=0 adapter.lora_dropout=0.1 train.threads=1)
"$RANKTUNE" train "$RECIPE" "${RESUME[@]}" train.output_dir="$WORK/straight" >"$WORK/straight.log" 2>&1 || fail "uninterrupted run: $(tail -3 "$WORK/straight.log")"
"$RANKTUNE" train "$RECIPE" "${RESUME[@]}" train.output_dir="$WORK/killed" >"$WORK/killed.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -d "$WORK/killed/checkpoint-10" ] && break; sleep 0.05; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ -e "$WORK/killed/summary.json" ]; then
  fail "the run finished before it could be killed"
else
  "$RANKTUNE" train "$RECIPE" "${RESUME[@]}" train.output_dir="$WORK/killed" train.resume_from=latest >"$WORK/resumed.log" 2>&1 ||
    fail "resume: $(tail -3 "$WORK/resumed.log")"
  if cmp -s "$WORK/straight/adapter_model.safetensors" "$WORK/killed/adapter_model.safetensors"; then
    pass "killed at $(ls -d "$WORK/killed"/checkpoint-* | head -1 | sed 's/.*-//')+ and resumed: adapter bit-identical to the uninterrupted run"
  else
    fail "resumed adapter differs from the uninterrupted one"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures train check(s) failed"
  exit 1
fi
echo "all train checks passed"
