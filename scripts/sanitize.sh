#!/usr/bin/env bash
# Runs C++ unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (docs/reliability.md,
# "Sanitizers"). LibTorch is not instrumented: memory errors inside it are not seen, and its static
# state is reported as leaks, so leak checking is off.
#   ./scripts/sanitize.sh                  the parsers' tests (core, io, tokenizer, prompt, data, the
#                                          LoRA config and recipe tests) in build-fuzz/, with clang:
#                                          what CI runs (scripts/test.sh)
#   ./scripts/sanitize.sh --full           the whole suite's fast subset below, gcc, in build-asan/
#                                          (adapter maths and PEFT files too; ~20-30 min from scratch)
#   ./scripts/sanitize.sh --full 'Json*'   another --gtest_filter
set -euo pipefail
cd "$(dirname "$0")/.."
# For the test runs only (nproc, which the builds use for -j, obeys OMP_NUM_THREADS).
run_sanitized() {
  ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}" \
    OMP_NUM_THREADS=1 RANKTUNE_NUM_THREADS=1 "$@"
}

if [ "${1:-}" != "--full" ]; then
  FUZZ_BUILD_DIR="${RANKTUNE_FUZZ_BUILD_DIR:-build-fuzz}"
  scripts/build_fuzz_tree.sh "$FUZZ_BUILD_DIR" sanitized_tests
  # Timing tests measure speed, which ASan changes.
  run_sanitized "$FUZZ_BUILD_DIR/fuzz/sanitized_tests" --gtest_brief=1 --gtest_filter="-*Performance*"
  exit
fi
shift
BUILD_DIR="${RANKTUNE_ASAN_BUILD_DIR:-build-asan}"
# The parsers, file I/O, configs, tokenizer, data, templates and adapter layers: everything that
# reads user input, plus the adapter maths (fast on the tiny test models). Left out: whole-model
# parity, training and evaluation runs, which take minutes under ASan and mostly exercise LibTorch.
DEFAULT_FILTER='JsonFields*:YamlFields*:Safetensors*:Strings*:Utf8*:Regex*:Dtype*:ErrorContext*:Tokenizer*:SharedVocabularies/*:Data*:Prompt*:Answer*:Calculator*:Reward*:LoraConfig*:BadValues/*:Table/*:TargetPatterns*:Linear*:Functional*:Inject*:Init*:ModulesToSave*:PeftFiles*:PeftState*:AdapterFiles*:ModelConfig*:Recipe*:Schedule*:FuzzRegression*:-TokenizerPerformance*'
FILTER="${1:-$DEFAULT_FILTER}"

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  # No vptr check: it needs the type info of every polymorphic class it sees, and libsentencepiece's
  # is not linked (the library is opened at run time; src/tokenizer/sentencepiece_library.cpp).
  flags="-fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DRANKTUNE_BUILD_EXAMPLES=OFF -DRANKTUNE_BUILD_PYTHON=OFF -DPython3_EXECUTABLE=/usr/bin/python3 >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$(nproc)" --target ranktune_tests

run_sanitized "$BUILD_DIR/tests/ranktune_tests" --gtest_filter="$FILTER"
