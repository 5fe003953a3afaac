#!/usr/bin/env bash
# End-to-end checks of `ranktune grpo` on the GRPO quickstart (everything it needs is in the
# repository), in a short configuration: a warm-up SFT (full fine-tuning, written as a model
# directory), a GRPO run on it whose files and metrics rows are sane, a run from an SFT adapter
# (adapter.init_from), bad input that writes nothing, and a run killed with SIGKILL that resumes to a
# bit-identical adapter.
#   tests/cli/grpo_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
RANKTUNE="$1/ranktune"
cd "$2" || exit 1
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failures=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }
RECIPE=examples/grpo/quickstart.yaml
# Small and quick: the checks are about behaviour, not quality.
QUICK=(grpo.num_generations=4 grpo.max_completion_length=8 train.batch_size=8 train.log_every=1 train.threads=1
       eval.limit=4 eval.max_new_tokens=8)

"$RANKTUNE" train examples/grpo/sft.yaml train.max_steps=10 train.batch_size=8 train.threads=1 eval.max_new_tokens=0 \
  train.output_dir="$WORK/sft" >"$WORK/sft.log" 2>&1 || fail "warm-up SFT: $(tail -3 "$WORK/sft.log")"
# Full fine-tuning writes a model directory: the base's config and tokenizer files beside the weights.
missing=""
for f in model.safetensors config.json tokenizer.json tokenizer_config.json; do [ -s "$WORK/sft/$f" ] || missing="$missing $f"; done
[ -z "$missing" ] && pass "full fine-tuning writes a model directory" || fail "the full SFT output lacks:$missing"
QUICK+=(model.path="$WORK/sft")

# ---- a whole run ---------------------------------------------------------------------------------
if "$RANKTUNE" grpo "$RECIPE" "${QUICK[@]}" train.max_steps=4 train.output_dir="$WORK/run" \
  >"$WORK/run.log" 2>&1; then
  missing=""
  for f in adapter_config.json adapter_model.safetensors metrics.jsonl training-curve.svg predictions.jsonl summary.json config.yaml; do
    [ -s "$WORK/run/$f" ] || missing="$missing $f"
  done
  [ -z "$missing" ] && pass "grpo run writes every output file" || fail "grpo run lacks:$missing"
  grep -q '"status": "completed"' "$WORK/run/summary.json" && pass "summary says completed" || fail "summary: $(cat "$WORK/run/summary.json")"
  grep -q "reward: .* -> " "$WORK/run.log" && pass "the command prints the first and last reward" || fail "output: $(tail -4 "$WORK/run.log")"
  # Every row: rewards in range, lengths within max_completion_length, fractions in [0, 1], a finite loss.
  if /usr/bin/env python3 - "$WORK/run/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if "reward" in r]
assert [r["step"] for r in train] == [1, 2, 3, 4], [r["step"] for r in train]
for r in train:
    assert 0 <= r["rewards/accuracy/mean"] <= 1 and 0 <= r["rewards/format/mean"] <= 1, r
    assert abs(r["reward"] - (r["rewards/accuracy/mean"] + 0.2 * r["rewards/format/mean"])) < 1e-9, r
    assert 1 <= r["completions/min_length"] <= r["completions/mean_length"] <= r["completions/max_length"] <= 8, r
    for k in ("frac_reward_zero_std", "completions/clipped_ratio", "clip_ratio/region_mean"):
        assert 0 <= r[k] <= 1, (k, r)
    for k in ("loss", "entropy", "grad_norm", "rollout_seconds", "train_seconds", "train_tokens_per_second"):
        assert math.isfinite(r[k]), (k, r)
    assert "kl" not in r  # beta = 0: no reference pass
PY
  then pass "metrics rows are sane (rewards, lengths, fractions, finite loss)"; else fail "metrics rows: $(cat "$WORK/run/metrics.jsonl")"; fi
else
  fail "grpo run failed: $(tail -5 "$WORK/run.log")"
fi

# ---- from an SFT adapter (adapter.init_from) on the random base --------------------------------------
FROM_ADAPTER=(model.path=examples/gsm8k/quickstart/model model.init_seed=0 adapter.init_from="$WORK/lora-sft")
"$RANKTUNE" train examples/grpo/sft.yaml adapter.method=lora adapter.r=8 adapter.target_modules=all-linear adapter.modules_to_save=[model.embed_tokens] \
  train.max_steps=4 train.batch_size=8 train.threads=1 eval.max_new_tokens=0 train.output_dir="$WORK/lora-sft" \
  >"$WORK/lora-sft.log" 2>&1 || fail "LoRA SFT: $(tail -3 "$WORK/lora-sft.log")"
if "$RANKTUNE" grpo "$RECIPE" "${QUICK[@]}" "${FROM_ADAPTER[@]}" train.max_steps=2 train.output_dir="$WORK/from-adapter" \
  >"$WORK/from-adapter.log" 2>&1 && grep -q '"init_from": ".*lora-sft"' "$WORK/from-adapter/summary.json"; then
  pass "a run from an SFT adapter completes and says where it started"
else
  fail "grpo from adapter.init_from: $(tail -3 "$WORK/from-adapter.log")"
fi

# ---- precision: bf16, and auto resolved by its probe (it used to reach autocast unresolved) ----------
for precision in bf16 auto; do
  if "$RANKTUNE" grpo "$RECIPE" "${QUICK[@]}" train.max_steps=2 train.precision=$precision \
    train.output_dir="$WORK/run-$precision" >"$WORK/$precision.log" 2>&1 &&
    grep -q '"status": "completed"' "$WORK/run-$precision/summary.json"; then
    pass "grpo with train.precision=$precision completes"
  else
    fail "grpo train.precision=$precision: $(tail -3 "$WORK/$precision.log")"
  fi
done

# ---- bad input writes nothing ----------------------------------------------------------------------
"$RANKTUNE" grpo "$RECIPE" "${QUICK[@]}" "${FROM_ADAPTER[@]}" adapter.init_from="$WORK/absent" train.output_dir="$WORK/absent-run" >"$WORK/absent.log" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "absent: 'adapter.init_from': has no adapter_config.json" "$WORK/absent.log" && [ ! -e "$WORK/absent-run" ] &&
  pass "a missing adapter.init_from: error naming the key, nothing written" || fail "absent init_from (rc $rc): $(cat "$WORK/absent.log")"
"$RANKTUNE" grpo "$RECIPE" "${QUICK[@]}" grpo.reward_funcs=[accuracy,fromat] train.output_dir="$WORK/typo-run" >"$WORK/typo.log" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "'grpo.reward_funcs': 'fromat' is not a built-in reward" "$WORK/typo.log" && [ ! -e "$WORK/typo-run" ] &&
  pass "an unknown reward: error naming it and the built-in ones, nothing written" || fail "unknown reward (rc $rc): $(cat "$WORK/typo.log")"

# ---- SIGKILL and resume: bit-identical to an uninterrupted run -----------------------------------
RESUME=("${QUICK[@]}" train.max_steps=12 train.save_every=4 train.keep_last=5 eval.max_new_tokens=0)
"$RANKTUNE" grpo "$RECIPE" "${RESUME[@]}" train.output_dir="$WORK/straight" >"$WORK/straight.log" 2>&1 || fail "uninterrupted run: $(tail -3 "$WORK/straight.log")"
"$RANKTUNE" grpo "$RECIPE" "${RESUME[@]}" train.output_dir="$WORK/killed" >"$WORK/killed.log" 2>&1 &
pid=$!
for _ in $(seq 1 6000); do [ -d "$WORK/killed/checkpoint-4" ] && break; sleep 0.05; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
killed_at=$(ls -d "$WORK/killed"/checkpoint-* 2>/dev/null | sed 's/.*-//' | sort -n | tail -1)
if [ -e "$WORK/killed/summary.json" ]; then
  fail "the run finished before it could be killed"
else
  "$RANKTUNE" grpo "$RECIPE" "${RESUME[@]}" train.output_dir="$WORK/killed" train.resume_from=latest >"$WORK/resumed.log" 2>&1 ||
    fail "resume: $(tail -3 "$WORK/resumed.log")"
  if cmp -s "$WORK/straight/adapter_model.safetensors" "$WORK/killed/adapter_model.safetensors"; then
    pass "killed after checkpoint-$killed_at and resumed: adapter bit-identical to the uninterrupted run"
  else
    fail "resumed adapter differs from the uninterrupted one"
  fi
  # The rows after the checkpoint were rewritten by the resumed run: the same rewards as the straight run.
  if diff <(grep -o '"reward":[^,]*' "$WORK/straight/metrics.jsonl") <(grep -o '"reward":[^,]*' "$WORK/killed/metrics.jsonl") >/dev/null; then
    pass "the resumed run sampled the same rollouts (same rewards per step)"
  else
    fail "rewards differ after resume"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures grpo check(s) failed"
  exit 1
fi
echo "all grpo checks passed"
