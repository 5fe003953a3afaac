#!/usr/bin/env bash
# Configures (once) and builds the clang ASan + UBSan tree that scripts/fuzz.sh and
# scripts/sanitize.sh share: the parsers compiled with coverage, the fuzz targets and
# sanitized_tests (fuzz/CMakeLists.txt).
#   scripts/build_fuzz_tree.sh BUILD_DIR TARGET...
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="$1"
shift
if ! command -v clang++ >/dev/null || ! compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; then
  echo "$(basename "$0"): needs clang and libFuzzer: ./scripts/setup.sh --sanitizers (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DRANKTUNE_FUZZ=ON -DRANKTUNE_BUILD_TESTS=OFF -DRANKTUNE_BUILD_EXAMPLES=OFF \
    -DRANKTUNE_BUILD_PYTHON=OFF -DPython3_EXECUTABLE=/usr/bin/python3 >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$(nproc)" --target "$@"
