#!/usr/bin/env bash
# End-to-end checks of `ranktune train` and `ranktune eval` on the quickstart recipe (everything it
# needs is in the repository): the run's files, DoRA, bad recipes that must write nothing, Ctrl-C,
# and a run killed with SIGKILL that resumes to bit-identical adapter weights.
#   tests/cli/train_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
RANKTUNE="$1/ranktune"
cd "$2" || exit 1
WORK="$(mktemp -d)"
trap 'umount "$WORK/small" 2>/dev/null; rm -rf "$WORK"' EXIT
failures=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }
RECIPE=examples/gsm8k/quickstart.yaml
# Small and quick: the checks are about behaviour, not quality.
QUICK=(train.max_steps=20 train.log_every=5 train.eval_every=10 train.save_every=10 eval.limit=6 eval.max_new_tokens=24 eval.during_training=2 train.threads=1)

# The files of a run directory with their checksums (to show that a refused command changed nothing).
snapshot() { (cd "$1" && find . -type f | sort | xargs sha256sum); }

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
  [ -s "$WORK/eval/eval-predictions.jsonl" ] && [ -s "$WORK/eval/eval-summary.json" ] && pass "eval writes predictions and a summary" ||
  fail "eval: $(tail -3 "$WORK/eval.log")"

# ---- the quickstart's model afterwards: generate finds the seed of its random base in the run ------
QS_MODEL=examples/gsm8k/quickstart/model
QS_PROMPT="Q: Ivan has 6 jars and gets 3 more. How many jars does he have?
A: Let's think step by step."
"$RANKTUNE" generate --model "$QS_MODEL" --adapter "$WORK/run" --prompt "$QS_PROMPT" --max-new-tokens 8 >"$WORK/gen.out" 2>&1 &&
  "$RANKTUNE" generate --model "$QS_MODEL" --adapter "$WORK/run" --init-seed 0 --prompt "$QS_PROMPT" --max-new-tokens 8 >"$WORK/gen0.out" 2>&1 &&
  cmp -s "$WORK/gen.out" "$WORK/gen0.out" && grep -q "Let's think step by step" "$WORK/gen.out" &&
  pass "generate with the quickstart's model and adapter (seed from the run's config.yaml)" || fail "generate: $(tail -3 "$WORK/gen.out")"
"$RANKTUNE" inspect "$QS_MODEL" --init-seed 0 >"$WORK/inspect-qs.json" 2>&1 && grep -q '"init_seed": 0' "$WORK/inspect-qs.json" &&
  grep -q '"files": \[\]' "$WORK/inspect-qs.json" && pass "inspect --init-seed reads the quickstart's model" ||
  fail "inspect --init-seed: $(cat "$WORK/inspect-qs.json")"
"$RANKTUNE" generate --model "$QS_MODEL" --prompt "$QS_PROMPT" --max-new-tokens 4 >"$WORK/gen-noseed.out" 2>&1
grep -q "has a config.json but no weights: pass --init-seed N" "$WORK/gen-noseed.out" &&
  pass "generate without weights or seed says to pass --init-seed" || fail "no seed: $(cat "$WORK/gen-noseed.out")"

"$RANKTUNE" train "$RECIPE" "${QUICK[@]}" train.max_steps=4 eval.max_new_tokens=0 adapter.method=dora train.output_dir="$WORK/dora" >"$WORK/dora.log" 2>&1 &&
  grep -q lora_magnitude_vector "$WORK/dora/adapter_model.safetensors" && pass "DoRA run saves magnitudes" || fail "dora: $(tail -3 "$WORK/dora.log")"

# ---- bf16: the quickstart in bf16 autocast, `auto`'s probe, a model held in bf16 for generate and eval ----
if "$RANKTUNE" train "$RECIPE" train.precision=bf16 train.max_steps=4 train.threads=1 eval.limit=2 eval.max_new_tokens=8 \
    train.output_dir="$WORK/bf16" >"$WORK/bf16.log" 2>&1 &&
  grep -q '"chosen": "bf16"' "$WORK/bf16/summary.json"; then
  pass "train.precision=bf16 trains the quickstart"
else
  fail "bf16: $(tail -3 "$WORK/bf16.log")"
fi
"$RANKTUNE" train "$RECIPE" train.precision=auto train.max_steps=1 train.threads=1 eval.max_new_tokens=0 \
  train.output_dir="$WORK/auto" >"$WORK/auto.log" 2>&1 &&
  grep -q "train.precision=auto chose .* GFLOP/s in fp32 and .* GFLOP/s in bf16" "$WORK/auto.log" &&
  grep -q '"bf16_gflops"' "$WORK/auto/summary.json" && pass "train.precision=auto logs its probe and records it" ||
  fail "auto: $(tail -3 "$WORK/auto.log")"
"$RANKTUNE" generate --model "$QS_MODEL" --adapter "$WORK/bf16" --dtype bfloat16 --prompt "$QS_PROMPT" --max-new-tokens 4 \
  >"$WORK/gen-bf16.out" 2>&1 && grep -q "Let's think step by step" "$WORK/gen-bf16.out" &&
  pass "generate --dtype bfloat16" || fail "generate bf16: $(tail -3 "$WORK/gen-bf16.out")"
"$RANKTUNE" generate --model "$QS_MODEL" --dtype fp8 --prompt "$QS_PROMPT" --max-new-tokens 4 --init-seed 0 >"$WORK/gen-fp8.out" 2>&1
grep -q -- "--dtype: .*fp8" "$WORK/gen-fp8.out" && pass "generate --dtype fp8 is refused naming the flag" ||
  fail "fp8: $(tail -3 "$WORK/gen-fp8.out")"
"$RANKTUNE" eval "$RECIPE" train.output_dir="$WORK/bf16" model.dtype=bfloat16 eval.limit=2 eval.max_new_tokens=8 \
  eval.output_dir="$WORK/eval-bf16" >"$WORK/eval-bf16.log" 2>&1 && [ -s "$WORK/eval-bf16/eval-summary.json" ] &&
  pass "eval with model.dtype=bfloat16" || fail "eval bf16: $(tail -3 "$WORK/eval-bf16.log")"

# ---- eval never overwrites training's predictions --------------------------------------------------
cp "$WORK/run/predictions.jsonl" "$WORK/train-predictions.jsonl"
if "$RANKTUNE" eval "$RECIPE" train.output_dir="$WORK/run" eval.limit=2 eval.max_new_tokens=8 >"$WORK/eval-here.log" 2>&1 &&
  cmp -s "$WORK/run/predictions.jsonl" "$WORK/train-predictions.jsonl" && [ -s "$WORK/run/eval-predictions.jsonl" ]; then
  pass "eval into the run directory writes eval-predictions.jsonl; training's predictions.jsonl is untouched"
else
  fail "eval overwrote or failed: $(tail -3 "$WORK/eval-here.log")"
fi

# ---- extending a finished run continues to the new total -------------------------------------------
EXTEND=(train.save_every=5 train.log_every=5 train.eval_every=0 eval.max_new_tokens=0 train.threads=1 train.output_dir="$WORK/extend")
"$RANKTUNE" train "$RECIPE" "${EXTEND[@]}" train.max_steps=5 >"$WORK/extend1.log" 2>&1 || fail "5-step run: $(tail -3 "$WORK/extend1.log")"
first=$(grep -o '"first_loss": [0-9.e-]*' "$WORK/extend/summary.json")
"$RANKTUNE" train "$RECIPE" "${EXTEND[@]}" train.max_steps=10 train.resume_from=latest >"$WORK/extend2.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q '"steps": 10,' "$WORK/extend/summary.json" && grep -q '"total_steps": 10,' "$WORK/extend/summary.json" &&
  grep -q '"step":10,' "$WORK/extend/metrics.jsonl" && [ -d "$WORK/extend/checkpoint-10" ] &&
  grep -q "$first" "$WORK/extend/summary.json" && ! grep -q '"first_loss": 0,' "$WORK/extend/summary.json"; then
  pass "a 5-step run resumed with max_steps=10 trains to step 10; summary covers the whole run ($first)"
else
  fail "extend (rc $rc): $(tail -3 "$WORK/extend2.log") $(cat "$WORK/extend/summary.json")"
fi
"$RANKTUNE" train "$RECIPE" "${EXTEND[@]}" train.max_steps=3 train.resume_from=latest >"$WORK/shrink.log" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "checkpoint-10.*'train.max_steps'.*at step 10 but this recipe stops at step 3" "$WORK/shrink.log" &&
  pass "resume with max_steps below the checkpoint: error naming both" || fail "shrink (rc $rc): $(tail -3 "$WORK/shrink.log")"

# ---- resume with a changed recipe names the keys and the checkpoint ---------------------------------
before=$(snapshot "$WORK/extend")
"$RANKTUNE" train "$RECIPE" "${EXTEND[@]}" train.max_steps=20 train.resume_from=latest adapter.r=8 adapter.method=dora train.seed=7 >"$WORK/changed.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "checkpoint-10" "$WORK/changed.log" && grep -q "adapter.r: 8 now, 32 in the checkpoint" "$WORK/changed.log" &&
  grep -q "adapter.use_dora: true now, false in the checkpoint" "$WORK/changed.log" && grep -q "train.seed: 7 now, 42 in the checkpoint" "$WORK/changed.log" &&
  ! grep -q "size of tensor" "$WORK/changed.log" && [ "$before" = "$(snapshot "$WORK/extend")" ]; then
  pass "resume with changed adapter.r, adapter.method=dora, train.seed: each key named with both values; nothing changed"
else
  fail "changed recipe (rc $rc): $(cat "$WORK/changed.log")"
fi

# ---- a fresh run into a directory that holds another run ---------------------------------------------
"$RANKTUNE" train "$RECIPE" "${EXTEND[@]}" train.max_steps=4 >"$WORK/reuse.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "extend: 'train.output_dir': holds another run" "$WORK/reuse.log" &&
  grep -q "train.resume_from=latest" "$WORK/reuse.log" && grep -q "train.overwrite_output_dir=true" "$WORK/reuse.log" &&
  [ "$before" = "$(snapshot "$WORK/extend")" ]; then
  pass "fresh run into another run's directory: refused, both ways out named, nothing changed"
else
  fail "reused directory (rc $rc): $(cat "$WORK/reuse.log")"
fi
mkdir "$WORK/extend/checkpoint-7.tmp.999999"
"$RANKTUNE" train "$RECIPE" "${EXTEND[@]}" train.max_steps=4 train.save_every=2 train.keep_last=0 train.overwrite_output_dir=true >"$WORK/overwrite.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ "$(cd "$WORK/extend" && ls -d checkpoint-* | tr '\n' ' ')" = "checkpoint-2 checkpoint-4 " ] &&
  grep -q '"steps": 4,' "$WORK/extend/summary.json"; then
  pass "train.overwrite_output_dir=true replaces the old run: no stale checkpoint or temporary left"
else
  fail "overwrite (rc $rc): $(ls "$WORK/extend") $(tail -3 "$WORK/overwrite.log")"
fi

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

# ---- SIGTERM and SIGHUP (timeout, docker stop, schedulers) save a checkpoint too ---------------------
for sig in TERM HUP; do
  code=$((128 + $(kill -l $sig)))
  "$RANKTUNE" train "$RECIPE" "${QUICK[@]}" train.max_steps=100000 train.save_every=0 eval.max_new_tokens=0 train.output_dir="$WORK/sig$sig" >"$WORK/sig$sig.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do grep -q '"step":5' "$WORK/sig$sig/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
  kill -$sig $pid
  wait $pid
  rc=$?
  if [ $rc -eq $code ] && ls -d "$WORK/sig$sig"/checkpoint-* >/dev/null 2>&1 && grep -q "status: interrupted" "$WORK/sig$sig.log"; then
    pass "SIG$sig: checkpoint saved, exit code $code"
  else
    fail "SIG$sig (rc $rc, expected $code): $(tail -3 "$WORK/sig$sig.log")"
  fi
done

# ---- Ctrl-C during the final evaluation stops it at once (the adapter is already saved) -------------
# Job control on: a background job of a plain script starts with SIGINT ignored, as no terminal does.
set -m
"$RANKTUNE" train "$RECIPE" train.max_steps=2 train.eval_every=0 train.save_every=0 train.threads=1 eval.limit=0 eval.batch_size=1 eval.max_new_tokens=200 train.output_dir="$WORK/evalint" >"$WORK/evalint.log" 2>&1 &
pid=$!
set +m
for _ in $(seq 1 600); do [ -s "$WORK/evalint/adapter_model.safetensors" ] && break; sleep 0.05; done
sleep 0.5
kill -INT $pid
stopped=""
for _ in $(seq 1 50); do kill -0 $pid 2>/dev/null || { stopped=yes; break; }; sleep 0.1; done
kill -9 $pid 2>/dev/null
wait $pid
rc=$?
if [ -n "$stopped" ] && [ $rc -eq 130 ] && [ ! -e "$WORK/evalint/summary.json" ] && [ -s "$WORK/evalint/adapter_model.safetensors" ]; then
  pass "Ctrl-C during the final evaluation: stopped within 5 s (exit 130), adapter kept"
else
  fail "Ctrl-C during evaluation (rc $rc, stopped=${stopped:-no}): $(tail -3 "$WORK/evalint.log")"
fi

# ---- disk full while checkpointing: reported, temporaries removed, previous checkpoint kept ---------
DISK=(train.max_steps=4 train.save_every=2 train.keep_last=0 train.log_every=2 train.eval_every=0 eval.max_new_tokens=0 train.threads=1)
"$RANKTUNE" train "$RECIPE" "${DISK[@]}" train.max_steps=2 train.output_dir="$WORK/measure" >"$WORK/measure.log" 2>&1 || fail "measure: $(tail -3 "$WORK/measure.log")"
checkpoint_kb=$(du -sk "$WORK/measure/checkpoint-2" | cut -f1)
mkdir -p "$WORK/small"
# Room for one checkpoint and the final adapter, not for two checkpoints.
if mount -t tmpfs -o size=$((checkpoint_kb * 3 / 2 + 64))k tmpfs "$WORK/small" 2>/dev/null; then
  "$RANKTUNE" train "$RECIPE" "${DISK[@]}" train.output_dir="$WORK/small/run" >"$WORK/full.log" 2>&1
  rc=$?
  if [ $rc -ne 134 ] && grep -q "checkpoint-4 was not saved (.*No space left on device); the previous checkpoint is kept" "$WORK/full.log" &&
    [ -d "$WORK/small/run/checkpoint-2" ] && [ ! -e "$WORK/small/run/checkpoint-4" ] && ! ls -d "$WORK/small/run"/*tmp* >/dev/null 2>&1; then
    pass "disk full at checkpoint-4 (rc $rc): reported with the file and cause, no temporaries, checkpoint-2 kept"
  else
    fail "disk full (rc $rc): $(ls "$WORK/small/run") $(tail -5 "$WORK/full.log")"
  fi
  umount "$WORK/small"
else
  echo "skip disk-full check: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)"
fi

# ---- a run file that cannot be written ends the run with an error naming it; the checkpoint stays ---
# Disk full at the final adapter: room for checkpoint-2 and half the adapter.
adapter_kb=$(du -sk "$WORK/measure/adapter_model.safetensors" | cut -f1)
mkdir -p "$WORK/small2"
if mount -t tmpfs -o size=$((checkpoint_kb + adapter_kb / 2))k tmpfs "$WORK/small2" 2>/dev/null; then
  "$RANKTUNE" train "$RECIPE" "${DISK[@]}" train.max_steps=2 train.output_dir="$WORK/small2/run" >"$WORK/full2.log" 2>&1
  rc=$?
  if [ $rc -eq 1 ] && grep -q "adapter_model.safetensors.*No space left on device" "$WORK/full2.log" &&
    [ -s "$WORK/small2/run/checkpoint-2/adapter_model.safetensors" ] && ! ls "$WORK/small2/run" | grep -q tmp; then
    pass "disk full at the final adapter: exit 1, the file and the cause named, no temporaries, checkpoint-2 kept"
  else
    fail "disk full at the final adapter (rc $rc): $(ls "$WORK/small2/run") $(tail -3 "$WORK/full2.log")"
  fi
  umount "$WORK/small2"
  # Permission: a read-only file system under the run directory.
  if mount -t tmpfs -o size=1m tmpfs "$WORK/small2" 2>/dev/null; then
    mkdir "$WORK/small2/run"
    mount -o remount,ro "$WORK/small2"
    "$RANKTUNE" train "$RECIPE" "${DISK[@]}" train.output_dir="$WORK/small2/run" >"$WORK/ro.log" 2>&1
    rc=$?
    if [ $rc -eq 1 ] && grep -q "config.yaml.*Read-only file system" "$WORK/ro.log" && [ -z "$(ls "$WORK/small2/run")" ]; then
      pass "read-only run directory: exit 1, the file and the cause named, nothing written"
    else
      fail "read-only run directory (rc $rc): $(tail -3 "$WORK/ro.log")"
    fi
    umount "$WORK/small2"
  fi
else
  echo "skip disk-full and read-only checks of the run files: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)"
fi
# A run directory under a regular file (denied whoever runs it).
touch "$WORK/a-file"
"$RANKTUNE" train "$RECIPE" "${DISK[@]}" train.output_dir="$WORK/a-file/run" >"$WORK/notdir.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "a-file/run.*train.output_dir.*cannot create the run directory: Not a directory" "$WORK/notdir.log"; then
  pass "run directory under a regular file: exit 1, naming the directory, the key and the cause"
else
  fail "run directory under a regular file (rc $rc): $(tail -3 "$WORK/notdir.log")"
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
  mkdir -p "$WORK/killed/checkpoint-20.tmp.999999"  # as a kill during a checkpoint write leaves it
  "$RANKTUNE" train "$RECIPE" "${RESUME[@]}" train.output_dir="$WORK/killed" train.resume_from=latest >"$WORK/resumed.log" 2>&1 ||
    fail "resume: $(tail -3 "$WORK/resumed.log")"
  ls -d "$WORK/killed"/*tmp* >/dev/null 2>&1 && fail "a stale checkpoint temporary survived the resume" || pass "resume removes stale checkpoint temporaries"
  if cmp -s "$WORK/straight/adapter_model.safetensors" "$WORK/killed/adapter_model.safetensors"; then
    pass "killed at $(ls -d "$WORK/killed"/checkpoint-* | head -1 | sed 's/.*-//')+ and resumed: adapter bit-identical to the uninterrupted run"
  else
    fail "resumed adapter differs from the uninterrupted one"
  fi
fi

# ---- hub names: download from a local imitation of the hub, then train from the cache offline ------
/usr/bin/env python3 - "$WORK/hub-spec.json" <<'PY'
import json, pathlib, sys
model = pathlib.Path("examples/gsm8k/quickstart/model")
files = {p.name: {"text": p.read_text(), "lfs": p.name == "tokenizer.json"} for p in sorted(model.iterdir())}
spec = {"repos": {"acme/quickstart": {"commit": "c0ffee" + "0" * 34, "refs": ["main"], "files": files}}}
pathlib.Path(sys.argv[1]).write_text(json.dumps(spec))
PY
python3 tests/tools/fake_hub.py "$WORK/hub-spec.json" "$WORK/hub-port" "$WORK/hub.log" &
HUB_PID=$!
for _ in $(seq 100); do [ -s "$WORK/hub-port" ] && break; sleep 0.05; done
HUB="http://127.0.0.1:$(cat "$WORK/hub-port" 2>/dev/null)"
HUBRUN=(train.max_steps=2 train.log_every=1 eval.max_new_tokens=0 train.threads=1 model.path=acme/quickstart)
snapshot=$(HF_HUB_CACHE="$WORK/hub-cache" HF_ENDPOINT="$HUB" "$RANKTUNE" download acme/quickstart 2>"$WORK/download.log")
[ "$snapshot" = "$WORK/hub-cache/models--acme--quickstart/snapshots/c0ffee$(printf '0%.0s' $(seq 34))" ] && [ -L "$snapshot/config.json" ] &&
  pass "ranktune download writes the cache layout" || fail "download: $snapshot $(cat "$WORK/download.log")"
HF_HUB_CACHE="$WORK/hub-cache2" HF_ENDPOINT="$HUB" "$RANKTUNE" train "$RECIPE" "${HUBRUN[@]}" model.download=true \
  train.output_dir="$WORK/hub-run" >"$WORK/hub-run.log" 2>&1 && [ -s "$WORK/hub-run/adapter_model.safetensors" ] &&
  grep -q '"base_model_name_or_path": "acme/quickstart"' "$WORK/hub-run/adapter_config.json" &&
  pass "model.download fetches a missing model, and the adapter names it as the hub does" || fail "model.download: $(tail -3 "$WORK/hub-run.log")"
kill "$HUB_PID" 2>/dev/null; wait "$HUB_PID" 2>/dev/null
HF_HUB_CACHE="$WORK/hub-cache" "$RANKTUNE" train "$RECIPE" "${HUBRUN[@]}" train.output_dir="$WORK/hub-offline" >"$WORK/hub-offline.log" 2>&1 &&
  pass "org/name trains from the cache with the hub gone" || fail "offline: $(tail -3 "$WORK/hub-offline.log")"
HF_HUB_CACHE="$WORK/hub-cache" "$RANKTUNE" train "$RECIPE" "${HUBRUN[@]}" model.path=acme/absent train.output_dir="$WORK/hub-absent" >"$WORK/hub-absent.log" 2>&1
grep -q "acme/absent: not found: no local directory 'acme/absent', and not in the Hugging Face cache ($WORK/hub-cache/models--acme--absent/refs/main" "$WORK/hub-absent.log" &&
  [ ! -e "$WORK/hub-absent" ] && pass "a missing hub name lists the places tried, nothing written" || fail "absent: $(cat "$WORK/hub-absent.log")"

if [ "$failures" -ne 0 ]; then
  echo "$failures train check(s) failed"
  exit 1
fi
echo "all train checks passed"
