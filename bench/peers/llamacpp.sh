#!/usr/bin/env bash
# llama.cpp as the generation peer of bench/run.sh, on the same weights as ranktune's decode benchmark.
#
#   LLAMA_CPP_DIR=/path/to/llama.cpp bench/peers/llamacpp.sh prepare   # build, write the GGUF, check logits
#   LLAMA_CPP_DIR=/path/to/llama.cpp bench/peers/llamacpp.sh measure   # one JSON line per figure
#
# prepare: builds llama.cpp from the checkout (CPU only, -j2) into $LLAMA_CPP_BUILD, has
# ranktune_bench write its decode model (SmolLM2-135M shape, random weights, adapter merged) as a
# Hugging Face directory with its logits for a few tokens (from the fp32 model and from the same
# weights held in bf16), writes the same arrays as an F32 GGUF and as a BF16 GGUF with llama.cpp's
# gguf-py (bench/peers/llamacpp_gguf.py: q/k permuted as convert_hf_to_gguf.py does; bf16 rounded
# to nearest even, as ranktune's bf16 copy is), and fails unless llama.cpp's logits (F32 KV cache)
# equal ranktune's: F32 against fp32 to 1e-4; BF16 against ranktune's bf16 model to $BF16_TOLERANCE,
# since the two round different intermediates to bf16 (llama.cpp each matrix product's input,
# ranktune every activation): each rounding moves a value by up to 2^-9 relatively.
# measure: llama-bench (32-token prompt + 64 new tokens, batch 1; pp512) and llama-batched-bench
# (8 and 16 sequences, 32-token prompts + 64 new each), F32 weights; the BF16 GGUF's batch-1
# decode (llama.cpp at b4747 multiplies BF16 with AVX512-BF16 where the CPU has it);
# $THREADS threads, llama.cpp's default F16 KV cache (llama-bench at b4747 accepts no f32 cache;
# the logits check uses one), llama-bench repeating each test $LLAMA_REPS times (3).
# The figures count new tokens over the whole time, prompt included, as ranktune's decode does.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp checkout}"
BENCH="${RANKTUNE_BUILD_DIR:-build}/bench/ranktune_bench"
SHAPE="${SHAPE:-smollm2}"
THREADS="${THREADS:-2}"
WORK="${LLAMA_CPP_WORK:-bench/results/llamacpp}"
LBUILD="${LLAMA_CPP_BUILD:-$WORK/build}"
MODEL="$WORK/$SHAPE"
IDS=(1 4 17 300 211 9 31 500)  # the tokens whose logits are compared (within even the tiny shape's vocabulary)
BF16_TOLERANCE=5e-2  # measured: 2.7e-2 on smollm2 (logits up to 2.1; 1.3% relative RMS), 3.7e-3 on tiny

prepare() {
  mkdir -p "$WORK"
  if [ ! -x "$LBUILD/bin/llama-bench" ] || [ ! -x "$LBUILD/bin/llama-batched-bench" ]; then
    echo "building llama.cpp from $LLAMA_CPP_DIR into $LBUILD" >&2
    cmake -S "$LLAMA_CPP_DIR" -B "$LBUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
      -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
    cmake --build "$LBUILD" -j2 --target llama-bench llama-batched-bench llama >&2
  fi
  local libdir
  libdir="$(dirname "$(find "$LBUILD" -name 'libllama.so' -print -quit)")"
  g++ -O2 -std=c++17 bench/peers/llamacpp_logits.cpp -I"$LLAMA_CPP_DIR/include" -I"$LLAMA_CPP_DIR/ggml/include" \
    -L"$libdir" -Wl,-rpath,"$(cd "$libdir" && pwd)" -lllama -o "$WORK/llamacpp_logits"
  "$BENCH" --shape "$SHAPE" export --out "$MODEL" --ids "${IDS[@]}" >&2
  check f32 "$MODEL/model.gguf" "$MODEL/logits.f32" 1e-4
  check bf16 "$MODEL/model-bf16.gguf" "$MODEL/logits.bf16.f32" "$BF16_TOLERANCE"
}

check() {  # TYPE GGUF REFERENCE_LOGITS TOLERANCE: write the GGUF, compare llama.cpp's logits with ranktune's
  PYTHONPATH="$LLAMA_CPP_DIR/gguf-py" /usr/bin/python3 bench/peers/llamacpp_gguf.py write "$MODEL" "$2" --type "$1"
  "$WORK/llamacpp_logits" "$2" "$MODEL/llamacpp_$(basename "$3")" "${IDS[@]}" 2>/dev/null
  /usr/bin/python3 bench/peers/llamacpp_gguf.py compare "$3" "$MODEL/llamacpp_$(basename "$3")" --tolerance "$4"
}

llama_bench() {  # GGUF [ARGS...]: llama-bench's JSON results
  "$LBUILD/bin/llama-bench" -m "$1" -t "$THREADS" -r "${LLAMA_REPS:-3}" -o json "${@:2}" 2>/dev/null
}

measure() {
  local gguf
  for gguf in model.gguf model-bf16.gguf; do
    [ -f "$MODEL/$gguf" ] || { echo "no $MODEL/$gguf: run '$0 prepare' first" >&2; exit 1; }
  done
  local bench_json bf16_json batched_jsonl
  bench_json="$(llama_bench "$MODEL/model.gguf" -p 512 -n 0 -pg 32,64)"
  bf16_json="$(llama_bench "$MODEL/model-bf16.gguf" -p 0 -n 0 -pg 32,64)"
  batched_jsonl="$("$LBUILD/bin/llama-batched-bench" -m "$MODEL/model.gguf" -t "$THREADS" -c 2048 -b 2048 -ub 512 \
    -npp 32 -ntg 64 -npl 8,16 --output-format jsonl 2>/dev/null | grep '^{' || true)"
  BENCH_JSON="$bench_json" BF16_JSON="$bf16_json" BATCHED_JSONL="$batched_jsonl" SHAPE="$SHAPE" THREADS="$THREADS" \
    /usr/bin/python3 - <<'EOF'
import json, os
rows = []  # (weights, figure)
for weights, results in (("merged-f32", "BENCH_JSON"), ("merged-bf16", "BF16_JSON")):
    for t in json.loads(os.environ[results]):
        seconds = t["avg_ns"] / 1e9
        if t["n_prompt"] == 512 and t["n_gen"] == 0:
            rows.append((weights, {"bench": "prefill512", "tokens_per_s": 512 / seconds}))
        elif t["n_prompt"] == 32 and t["n_gen"] == 64:
            rows.append((weights, {"bench": "decode", "tokens_per_s": 64 / seconds}))
for line in os.environ["BATCHED_JSONL"].splitlines():
    b = json.loads(line)
    rows.append(("merged-f32", {"bench": f"decode-batch{b['pl']}", "tokens_per_s": b["pl"] * b["tg"] / b["t"],
                                "generation_only_tokens_per_s": b["speed_tg"]}))
if len(rows) != 5:
    raise SystemExit(f"llama.cpp gave {len(rows)} of the 5 expected figures: {rows}")
for weights, r in rows:
    print(json.dumps({"impl": "llamacpp", "method": weights, **r, "shape": os.environ["SHAPE"],
                      "threads": int(os.environ["THREADS"])}))
EOF
}

case "${1:-}" in
  prepare) prepare ;;
  measure) measure ;;
  *) echo "usage: LLAMA_CPP_DIR=... $0 prepare|measure" >&2; exit 2 ;;
esac
