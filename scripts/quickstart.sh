#!/usr/bin/env bash
# The README's first command: installs and builds what is missing, then runs the adapter example
# (LoRA and DoRA learning a low-rank change, then merged into the weight).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
BUILD_DIR="${RANKTUNE_BUILD_DIR:-build}"
"$BUILD_DIR/examples/adapter_basics"
