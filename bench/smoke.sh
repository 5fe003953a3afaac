#!/usr/bin/env bash
# Runs every benchmark once on the tiny shape and checks that each reports sane numbers.
#   bench/smoke.sh BUILD/bench/ranktune_bench SOURCE_DIR
set -euo pipefail
BENCH="$1"
PEER="$2/bench/peers/peer.py"
{
  for method in lora dora full; do
    "$BENCH" --shape tiny --threads 1 train --method "$method" --steps 1 --warmup 1 --seq 32 --batch 2
    /usr/bin/python3 "$PEER" train --shape tiny --threads 1 --method "$method" --steps 1 --warmup 1 --seq 32 --batch 2
  done
  "$BENCH" --shape tiny --threads 1 --quantize int8 train --method lora --steps 1 --warmup 1 --seq 32 --batch 2
  "$BENCH" --shape tiny --threads 1 --quantize nf4 --double-quant train --method dora --steps 1 --warmup 1 --seq 32 --batch 2
  "$BENCH" --shape tiny --threads 1 --precision bf16 train --method dora --steps 1 --warmup 1 --seq 32 --batch 2
  "$BENCH" --shape tiny --threads 1 decode --new-tokens 8 --prompt 8 --repeats 1
  "$BENCH" --shape tiny --threads 1 decode --merged --new-tokens 8 --prompt 8 --repeats 1
  "$BENCH" --shape tiny --threads 1 decode --merged --dtype bf16 --new-tokens 8 --prompt 8 --repeats 1
  "$BENCH" --shape tiny --threads 1 decode --merged --batch 4 --ragged --new-tokens 8 --prompt 8 --repeats 1
  "$BENCH" --shape tiny --threads 1 decode --batch 4 --group 2 --new-tokens 8 --prompt 8 --repeats 1
  "$BENCH" --shape tiny --threads 1 prefill --prompt 16 --repeats 1
  "$BENCH" --shape tiny --threads 1 profile --method dora --steps 1 --warmup 1 --seq 32 --batch 2
  "$BENCH" --shape tiny --threads 1 paired --method dora --steps 2 --warmup 1 --seq 32 --batch 2
  "$BENCH" --shape tiny --threads 1 paired --method lora --against-precision bf16 --steps 2 --warmup 1 --seq 32 --batch 2
  "$BENCH" --shape tiny --threads 1 decode --new-tokens 8 --prompt 8 --repeats 2 --profile-top 5
  /usr/bin/python3 "$PEER" decode --shape tiny --threads 1 --new-tokens 8 --prompt 8 --repeats 1
} | /usr/bin/python3 "$2/bench/check_results.py"
