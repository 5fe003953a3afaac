#!/usr/bin/env bash
# Data parallelism end to end (docs/distributed.md): 2 local workers (Gloo on loopback) against one
# process with the same global batch, a worker killed mid-run, a rendezvous that cannot complete,
# a stop forwarded by the launcher, and an interrupted 2-worker run resumed to the same adapter.
#   tests/cli/distributed_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
RANKTUNE="$1/ranktune"
cd "$2" || exit 1
COMPARE="/usr/bin/python3 tests/cli/compare_runs.py"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failures=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }
RECIPE=examples/gsm8k/quickstart.yaml
# data.limit=85 leaves 45 training examples: 6 global batches of 8 per epoch, the last of 5 (rank 0
# takes 4, rank 1 one), so 10 steps cross an epoch with uneven shares; lengths vary (group_by_length).
QUICK=(data.limit=85 data.validation_size=5 data.group_by_length=true train.max_steps=10 train.log_every=1
       train.eval_every=0 train.save_every=0 eval.limit=6 eval.max_new_tokens=8 train.threads=1 train.distributed_timeout=60)
# No worker of a test may outlive it.
leftover() { pgrep -f "output_dir=$WORK/$1" >/dev/null; }

# ---- 2 workers × batch 4 train what 1 process × batch 8 trains -----------------------------------------
"$RANKTUNE" train "$RECIPE" "${QUICK[@]}" train.batch_size=8 train.output_dir="$WORK/one" >"$WORK/one.log" 2>&1 ||
  fail "one process: $(tail -3 "$WORK/one.log")"
if "$RANKTUNE" train --nproc-per-node 2 "$RECIPE" "${QUICK[@]}" train.batch_size=4 train.output_dir="$WORK/two" >"$WORK/two.log" 2>&1; then
  result=$($COMPARE "$WORK/one" "$WORK/two" 1e-5) && pass "2 workers x 4 = 1 process x 8: $result" || fail "2 workers differ: $result"
  [ "$(wc -l <"$WORK/two/predictions.jsonl")" -eq 6 ] &&
    diff <(grep -o '"question":"[^"]*"' "$WORK/one/predictions.jsonl") <(grep -o '"question":"[^"]*"' "$WORK/two/predictions.jsonl") >/dev/null &&
    pass "the sharded evaluation gathers every question in order" || fail "predictions.jsonl of 2 workers"
  [ "$(ls "$WORK/two" | grep -c '\.tmp')" -eq 0 ] && pass "no temporary left" || fail "temporaries: $(ls "$WORK/two")"
else
  fail "2 workers: $(tail -5 "$WORK/two.log")"
fi

# ---- a worker killed mid-run ends the run within the timeout, no worker left --------------------------------
start=$(date +%s)
"$RANKTUNE" train --nproc-per-node 2 "$RECIPE" "${QUICK[@]}" train.max_steps=100000 train.batch_size=4 \
  train.distributed_timeout=20 train.output_dir="$WORK/killed" >"$WORK/killed.log" 2>&1 &
launcher=$!
for _ in $(seq 1 600); do grep -q '"step"' "$WORK/killed/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
victim=$(pgrep -P "$launcher" | tail -1)
kill -9 "$victim"
wait "$launcher"
status=$?
elapsed=$(($(date +%s) - start))
[ "$status" -ne 0 ] && grep -q "worker 1 (pid $victim) was killed by signal 9" "$WORK/killed.log" &&
  pass "a killed worker ends the run (exit $status, ${elapsed}s): $(grep 'error: worker' "$WORK/killed.log")" ||
  fail "killed worker: exit $status, $(tail -3 "$WORK/killed.log")"
[ "$elapsed" -lt 60 ] && pass "ended within the timeout" || fail "took ${elapsed}s"
leftover killed && fail "a worker is still running" || pass "no worker left running"

# ---- a rendezvous that cannot complete is an error, not a hang ------------------------------------------------
start=$(date +%s)
WORLD_SIZE=2 RANK=1 LOCAL_RANK=1 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 \
  "$RANKTUNE" train "$RECIPE" "${QUICK[@]}" train.distributed_timeout=3 train.output_dir="$WORK/alone" >"$WORK/alone.log" 2>&1
status=$?
elapsed=$(($(date +%s) - start))
[ "$status" -ne 0 ] && grep -q "could not meet the others at 127.0.0.1:1" "$WORK/alone.log" && [ "$elapsed" -lt 30 ] &&
  pass "a missing peer: $(grep error "$WORK/alone.log" | head -c 160)" || fail "rendezvous: exit $status after ${elapsed}s: $(tail -2 "$WORK/alone.log")"
[ ! -e "$WORK/alone" ] && pass "nothing written" || fail "the failed worker wrote $WORK/alone"

# ---- SIGTERM to the launcher: the workers checkpoint and stop; the resume ends where an uninterrupted run ends ----
RESUME=("${QUICK[@]}" train.max_steps=30 train.batch_size=4)
"$RANKTUNE" train --nproc-per-node 2 "$RECIPE" "${RESUME[@]}" train.output_dir="$WORK/whole" >"$WORK/whole.log" 2>&1 ||
  fail "uninterrupted 2-worker run: $(tail -3 "$WORK/whole.log")"
"$RANKTUNE" train --nproc-per-node 2 "$RECIPE" "${RESUME[@]}" train.output_dir="$WORK/parts" >"$WORK/parts.log" 2>&1 &
launcher=$!
for _ in $(seq 1 600); do grep -q '"step": *3\b\|"step":3,' "$WORK/parts/metrics.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -TERM "$launcher"
wait "$launcher"
status=$?
checkpoint=$(ls -d "$WORK/parts"/checkpoint-* 2>/dev/null | head -1)
[ "$status" -eq 143 ] && [ -n "$checkpoint" ] && pass "SIGTERM to the launcher: exit 143, $(basename "$checkpoint") saved" ||
  fail "SIGTERM: exit $status, $(ls "$WORK/parts"), $(tail -3 "$WORK/parts.log")"
leftover parts && fail "a worker outlived the stop" || pass "every worker stopped"
if "$RANKTUNE" train --nproc-per-node 2 "$RECIPE" "${RESUME[@]}" train.resume_from=latest train.output_dir="$WORK/parts" >"$WORK/resume.log" 2>&1; then
  result=$($COMPARE "$WORK/whole" "$WORK/parts" 0) && pass "resumed 2-worker run = uninterrupted one, bit for bit: $result" ||
    fail "the resumed run differs: $result"
else
  fail "resume: $(tail -3 "$WORK/resume.log")"
fi

# ---- bad values ---------------------------------------------------------------------------------------------
"$RANKTUNE" train "$RECIPE" train.distributed_timeout=0 train.output_dir="$WORK/bad" >"$WORK/bad.log" 2>&1
grep -q "train.distributed_timeout.*must be positive" "$WORK/bad.log" && [ ! -e "$WORK/bad" ] &&
  pass "train.distributed_timeout=0 is refused" || fail "timeout 0: $(cat "$WORK/bad.log")"
WORLD_SIZE=2 RANK=five MASTER_PORT=29500 "$RANKTUNE" train "$RECIPE" "${QUICK[@]}" train.output_dir="$WORK/bad" >"$WORK/bad.log" 2>&1
grep -q "RANK='five' is not an integer" "$WORK/bad.log" && pass "a bad RANK is named" || fail "bad RANK: $(cat "$WORK/bad.log")"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
