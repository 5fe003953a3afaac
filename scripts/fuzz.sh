#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (docs/reliability.md, "Fuzzing"). Builds build-fuzz/ with
# clang (ASan + UBSan; scripts/build_fuzz_tree.sh), writes the seed corpora from the repository's
# and ../shared's files, then runs each target for SECONDS and prints executions and crashes.
#   ./scripts/fuzz.sh                    every target, 60 s each
#   ./scripts/fuzz.sh 600 recipe jsonl   two targets, 10 min each
# The growing corpus stays in build-fuzz/corpus/<target>/; a crashing input is written to
# build-fuzz/crashes/<target>/ (replay: build-fuzz/fuzz/fuzz_<target> FILE). Exits 1 if any target
# crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
shift || true
BUILD_DIR="${RANKTUNE_FUZZ_BUILD_DIR:-build-fuzz}"
# Every fuzz/fuzz_<target>.cpp is a target.
ALL_TARGETS=()
for f in fuzz/fuzz_*.cpp; do t="${f#fuzz/fuzz_}"; ALL_TARGETS+=("${t%.cpp}"); done
TARGETS=("$@")
[ "${#TARGETS[@]}" -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")

scripts/build_fuzz_tree.sh "$BUILD_DIR" "${TARGETS[@]/#/fuzz_}"
python3 fuzz/make_seeds.py "$PWD" "$BUILD_DIR/seeds"

# Leaks are not findings here (LibTorch and yaml-cpp keep static state); memory errors and UB are.
export ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}"
failed=0
summary=$(printf '%-18s %8s %12s %8s' target seconds executions crashes)
for t in "${TARGETS[@]}"; do
  corpus="$BUILD_DIR/corpus/$t" crashes="$BUILD_DIR/crashes/$t" log="$BUILD_DIR/fuzz-$t.log"
  mkdir -p "$corpus" "$crashes" "$BUILD_DIR/seeds/$t"
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
  start=$(date +%s)
  marker="$BUILD_DIR/.fuzz-start-$t"
  touch "$marker"
  status=0
  "$BUILD_DIR/fuzz/fuzz_$t" "$corpus" "$BUILD_DIR/seeds/$t" -max_total_time="$SECONDS_PER_TARGET" \
    -max_len=65536 -timeout=20 -rss_limit_mb=2560 -print_final_stats=1 \
    -artifact_prefix="$crashes/" >"$log" 2>&1 || status=$?
  elapsed=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -z "$runs" ] && runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  found=$(find "$crashes" -type f -newer "$marker" | wc -l)
  if [ "$status" -ne 0 ]; then
    failed=1
    [ "$found" -eq 0 ] && found=1
    echo "fuzz: $t FAILED (exit $status), see $log:"
    grep -E 'ERROR|runtime error|terminate|what\(\)' "$log" | head -5 || true
  fi
  line=$(printf '%-18s %8s %12s %8s' "$t" "$elapsed" "${runs:-0}" "$found")
  echo "$line"
  summary+=$'\n'"$line"
done
echo
echo "$summary"
exit "$failed"
