#!/usr/bin/env bash
# Runs every test. Builds first (scripts/setup.sh installs what is missing and rebuilds what is
# stale; on an up-to-date tree it takes a second), then runs ctest on both cores, then the parsers'
# unit tests under ASan + UBSan and every fuzz target for 15 s (both in build-fuzz/, built with
# clang; docs/reliability.md).
#   ./scripts/test.sh                    everything
#   ./scripts/test.sh -R cpp             only these ctest entries (arguments pass through to ctest)
#   RANKTUNE_SANITIZE=0 ./scripts/test.sh   ctest only
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=1
if [ "$#" -gt 0 ] || [ "${RANKTUNE_SANITIZE:-1}" = 0 ]; then sanitize=0; fi
if [ "$sanitize" = 1 ]; then ./scripts/setup.sh --sanitizers; else ./scripts/setup.sh; fi
BUILD_DIR="${RANKTUNE_BUILD_DIR:-build}"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" "$@"
if [ "$sanitize" = 1 ]; then
  ./scripts/sanitize.sh
  ./scripts/fuzz.sh 15
fi
