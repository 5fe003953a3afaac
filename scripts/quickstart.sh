#!/usr/bin/env bash
# The README's first command: installs and builds what is missing, then runs the GSM8K quickstart
# (LoRA on a tiny model and data that live in this repository; a couple of minutes on 2 cores).
#   ./scripts/quickstart.sh                       # outputs in runs/quickstart
#   ./scripts/quickstart.sh adapter.method=dora   # any recipe override
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
BUILD_DIR="${RANKTUNE_BUILD_DIR:-build}"
# The quickstart's outputs are a demo: running it again replaces them (train.resume_from=latest
# continues the last run instead).
"$BUILD_DIR/ranktune" train examples/gsm8k/quickstart.yaml train.overwrite_output_dir=true "$@"
