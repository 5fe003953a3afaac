#!/usr/bin/env bash
# Runs every test. Builds first (scripts/setup.sh installs what is missing and rebuilds what is
# stale; on an up-to-date tree it takes a second), then runs ctest on both cores.
#   ./scripts/test.sh               everything
#   ./scripts/test.sh -R cpp        ctest arguments pass through
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
BUILD_DIR="${RANKTUNE_BUILD_DIR:-build}"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" "$@"
