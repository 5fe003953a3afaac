#!/usr/bin/env bash
# llama.cpp as the generation peer of bench/run.sh, on the same weights as ranktune's decode benchmark.
#
#   LLAMA_CPP_DIR=/path/to/llama.cpp bench/peers/llamacpp.sh prepare   # build, write the GGUF, check logits
#   LLAMA_CPP_DIR=/path/to/llama.cpp bench/peers/llamacpp.sh measure   # one JSON line per figure
#
# prepare: builds llama.cpp from the checkout (CPU only, -j2) into $LLAMA_CPP_BUILD, has
# ranktune_bench write its decode model (SmolLM2-135M shape, random weights, adapter merged) as a
# Hugging Face directory with its logits for a few tokens, writes the same arrays as an F32 GGUF
# with llama.cpp's gguf-py (bench/peers/llamacpp_gguf.py: q/k permuted as convert_hf_to_gguf.py
# does), and fails unless llama.cpp's logits equal ranktune's (F32 KV cache).
# measure: llama-bench (32-token prompt + 64 new tokens, batch 1; pp512) and llama-batched-bench
# (8 and 16 sequences, 32-token prompts + 64 new each), F32 weights, $THREADS threads, llama.cpp's
# default F16 KV cache (llama-bench at b4747 accepts no f32 cache; the logits check uses one),
# llama-bench repeating each test $LLAMA_REPS times (3).
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
  PYTHONPATH="$LLAMA_CPP_DIR/gguf-py" /usr/bin/python3 bench/peers/llamacpp_gguf.py write "$MODEL" "$MODEL/model.gguf"
  "$WORK/llamacpp_logits" "$MODEL/model.gguf" "$MODEL/llamacpp_logits.f32" "${IDS[@]}" 2>/dev/null
  /usr/bin/python3 bench/peers/llamacpp_gguf.py compare "$MODEL/logits.f32" "$MODEL/llamacpp_logits.f32" --tolerance 1e-4
}

measure() {
  [ -f "$MODEL/model.gguf" ] || { echo "no $MODEL/model.gguf: run '$0 prepare' first" >&2; exit 1; }
  local bench_json batched_jsonl
  bench_json="$("$LBUILD/bin/llama-bench" -m "$MODEL/model.gguf" -t "$THREADS" -p 512 -n 0 -pg 32,64 -r "${LLAMA_REPS:-3}" \
    -o json 2>/dev/null)"
  batched_jsonl="$("$LBUILD/bin/llama-batched-bench" -m "$MODEL/model.gguf" -t "$THREADS" -c 2048 -b 2048 -ub 512 \
    -npp 32 -ntg 64 -npl 8,16 --output-format jsonl 2>/dev/null | grep '^{' || true)"
  BENCH_JSON="$bench_json" BATCHED_JSONL="$batched_jsonl" SHAPE="$SHAPE" THREADS="$THREADS" /usr/bin/python3 - <<'EOF'
import json, os
rows = []
for t in json.loads(os.environ["BENCH_JSON"]):
    seconds = t["avg_ns"] / 1e9
    if t["n_prompt"] == 512 and t["n_gen"] == 0:
        rows.append({"bench": "prefill512", "tokens_per_s": 512 / seconds})
    elif t["n_prompt"] == 32 and t["n_gen"] == 64:
        rows.append({"bench": "decode", "tokens_per_s": 64 / seconds})
for line in os.environ["BATCHED_JSONL"].splitlines():
    b = json.loads(line)
    rows.append({"bench": f"decode-batch{b['pl']}", "tokens_per_s": b["pl"] * b["tg"] / b["t"],
                 "generation_only_tokens_per_s": b["speed_tg"]})
if len(rows) != 4:
    raise SystemExit(f"llama.cpp gave {len(rows)} of the 4 expected figures: {rows}")
for r in rows:
    print(json.dumps({"impl": "llamacpp", "method": "merged-f32", **r, "shape": os.environ["SHAPE"],
                      "threads": int(os.environ["THREADS"])}))
EOF
}

case "${1:-}" in
  prepare) prepare ;;
  measure) measure ;;
  *) echo "usage: LLAMA_CPP_DIR=... $0 prepare|measure" >&2; exit 2 ;;
esac
