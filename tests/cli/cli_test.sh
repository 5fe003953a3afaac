#!/usr/bin/env bash
# End-to-end checks of the `ranktune` tool: real models from ../shared, and malformed input that
# must fail with a non-zero exit and a message naming the file — never a crash.
#   tests/cli/cli_test.sh BUILD_DIR SHARED_DIR
set -uo pipefail
RANKTUNE="$1/ranktune"
SHARED="$2"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failures=0

pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }

# expect_failure NAME PATTERN CMD...: the command exits 1 (not a signal) and stderr matches PATTERN.
expect_failure() {
  local name="$1" pattern="$2"
  shift 2
  "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  if [ "$rc" -ne 1 ]; then fail "$name: exit code $rc (want 1): $(cat "$WORK/err")"; return; fi
  if ! grep -q -- "$pattern" "$WORK/err"; then fail "$name: stderr lacks '$pattern': $(cat "$WORK/err")"; return; fi
  pass "$name"
}

# The C++ example answers --help with its usage (exit 0) and reports bad arguments (no abort).
EXAMPLE="$1/examples/finetune_gsm8k"
if [ -x "$EXAMPLE" ]; then
  "$EXAMPLE" --help >"$WORK/out" 2>"$WORK/err" && grep -q "usage: finetune_gsm8k" "$WORK/out" &&
    pass "finetune_gsm8k --help" || fail "finetune_gsm8k --help: $(cat "$WORK/out" "$WORK/err")"
  "$EXAMPLE" --bogus >/dev/null 2>"$WORK/err"
  [ $? -eq 2 ] && grep -q "unknown option '--bogus'" "$WORK/err" && pass "finetune_gsm8k rejects an unknown option" ||
    fail "finetune_gsm8k --bogus: $(cat "$WORK/err")"
  expect_failure "finetune_gsm8k names a missing model" "$WORK/no_model" "$EXAMPLE" "$WORK/no_model"
  expect_failure "finetune_gsm8k checks STEPS" "STEPS must be a positive integer, got 'ten'" "$EXAMPLE" a b c d ten
fi

if [ ! -d "$SHARED/fixtures/hf-tiny" ] || [ ! -d "$SHARED/models/stories260k" ]; then
  echo "SKIP: needs ../shared/fixtures/hf-tiny and ../shared/models/stories260k (not present on this machine)"
  exit 0
fi
LLAMA="$SHARED/fixtures/hf-tiny/llama"
DORA="$SHARED/fixtures/hf-tiny/llama_dora_adapter"
STORIES="$SHARED/models/stories260k"

# ---- real models -------------------------------------------------------------------------------
expected=$(/usr/bin/python3 -c "import json,sys; print(' '.join(map(str, json.load(open(sys.argv[1]))['llama2c_greedy_200_ids'])))" "$STORIES/golden.json")
got=$("$RANKTUNE" generate --model "$STORIES" --prompt-ids "1" --max-new-tokens 200 --print-ids)
[ "$got" = "$expected" ] && pass "stories260k greedy 200 equals llama2.c" || fail "stories260k greedy 200: got $got"

printf 'Hello world' >"$WORK/hello.txt"
got=$("$RANKTUNE" tokenize --tokenizer "$SHARED/tokenizers/gpt-2" --file "$WORK/hello.txt")
[ "$got" = "15496 995" ] && pass "tokenize gpt-2" || fail "tokenize gpt-2: got '$got'"
got=$("$RANKTUNE" tokenize --tokenizer "$STORIES" --file "$WORK/hello.txt" --add-special-tokens)
[ "${got%% *}" = "1" ] && pass "tokenize adds BOS when asked" || fail "tokenize --add-special-tokens: got '$got'"

# generate --chat: the prompt goes through the tokenizer's chat template (the ids are those of the
# rendered text, no BOS added: the template decides); a tokenizer without one is an error.
mkdir -p "$WORK/chat_tok"
cp "$STORIES/tokenizer.json" "$WORK/chat_tok/"
printf '%s' '{"bos_token": "<s>", "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"}' >"$WORK/chat_tok/tokenizer_config.json"
printf '<s>system: Be kind.\nuser: Once upon a time\nassistant:' >"$WORK/chat_rendered.txt"
expected=$("$RANKTUNE" tokenize --tokenizer "$WORK/chat_tok" --file "$WORK/chat_rendered.txt")
got=$("$RANKTUNE" generate --model "$STORIES" --tokenizer "$WORK/chat_tok" --chat --system "Be kind." --prompt "Once upon a time" --max-new-tokens 3 --print-ids)
[ -n "$expected" ] && [ "${got% * * *}" = "$expected" ] && pass "generate --chat renders the model's chat template" ||
  fail "generate --chat: got '$got', want the ids '$expected' then 3 more"
expect_failure "generate --chat without a chat template" "no chat template" \
  "$RANKTUNE" generate --model "$STORIES" --chat --prompt "x" --max-new-tokens 1

"$RANKTUNE" inspect "$LLAMA" >"$WORK/inspect.json" && grep -q '"architecture": "LlamaForCausalLM"' "$WORK/inspect.json" &&
  grep -q '"kv_heads": 4' "$WORK/inspect.json" && pass "inspect" || fail "inspect: $(cat "$WORK/inspect.json")"

# merge: greedy tokens of the merged model equal the model with the adapter attached.
"$RANKTUNE" merge --model "$LLAMA" --adapter "$DORA" --out "$WORK/merged" >/dev/null &&
  [ -f "$WORK/merged/model.safetensors" ] && [ -f "$WORK/merged/config.json" ] && pass "merge writes a model" || fail "merge"
with_adapter=$("$RANKTUNE" generate --model "$LLAMA" --adapter "$DORA" --prompt-ids "1 5 17" --max-new-tokens 12 --print-ids)
merged=$("$RANKTUNE" generate --model "$WORK/merged" --prompt-ids "1 5 17" --max-new-tokens 12 --print-ids)
base=$("$RANKTUNE" generate --model "$LLAMA" --prompt-ids "1 5 17" --max-new-tokens 12 --print-ids)
[ "$with_adapter" = "$merged" ] && pass "merged model generates as the adapter" || fail "merged: $merged vs $with_adapter"
[ "$with_adapter" != "$base" ] && pass "the adapter changes generation" || fail "adapter had no effect"
expect_failure "merge refuses an existing output" "already exists" "$RANKTUNE" merge --model "$LLAMA" --adapter "$DORA" --out "$WORK/merged"
# An unknown torch_dtype is an error naming config.json's key (it used to be stored as float32).
cp -r "$LLAMA" "$WORK/odd_dtype"
/usr/bin/python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['torch_dtype']='float8'; json.dump(c, open(p, 'w'))" "$WORK/odd_dtype/config.json"
expect_failure "merge names an unknown torch_dtype" "config.json: 'torch_dtype': unknown dtype 'float8'" \
  "$RANKTUNE" merge --model "$WORK/odd_dtype" --adapter "$DORA" --out "$WORK/odd_merged"
[ ! -e "$WORK/odd_merged" ] && pass "nothing written for an unknown torch_dtype" || fail "odd_merged exists"

# merge --dtype writes the weights in that dtype and says so in config.json; merge --quantize
# dequantizes the QLoRA base first and the merged model generates as base + adapter did.
"$RANKTUNE" merge --model "$LLAMA" --adapter "$DORA" --out "$WORK/merged_bf16" --dtype bf16 >"$WORK/out" &&
  grep -q "weights written as bfloat16: rounding error max |dw| = [0-9]" "$WORK/out" &&
  grep -q '"torch_dtype": "bfloat16"' "$WORK/merged_bf16/config.json" &&
  [ "$(/usr/bin/python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]
print(','.join(sorted({v['dtype'] for k,v in json.loads(f.read(n)).items() if k!='__metadata__'})))" "$WORK/merged_bf16/model.safetensors")" = BF16 ] &&
  pass "merge --dtype bf16 writes bf16 weights and torch_dtype" || fail "merge --dtype bf16: $(cat "$WORK/out") $(grep torch_dtype "$WORK/merged_bf16/config.json")"
"$RANKTUNE" merge --model "$LLAMA" --adapter "$DORA" --quantize nf4 --out "$WORK/merged_nf4" >"$WORK/out" &&
  grep -q "after dequantizing the nf4 base" "$WORK/out" && pass "merge --quantize nf4 reports the dequantized base" ||
  fail "merge --quantize nf4: $(cat "$WORK/out")"
qlora=$("$RANKTUNE" generate --model "$LLAMA" --adapter "$DORA" --quantize nf4 --prompt-ids "1 5 17" --max-new-tokens 12 --print-ids)
merged=$("$RANKTUNE" generate --model "$WORK/merged_nf4" --prompt-ids "1 5 17" --max-new-tokens 12 --print-ids)
[ -n "$merged" ] && [ "$qlora" = "$merged" ] && pass "the merged nf4 model generates as the nf4 base with the adapter" ||
  fail "merged nf4: $merged vs $qlora"
expect_failure "merge names a bad --dtype" "\--dtype: unknown dtype 'float8'.*nothing was written" \
  "$RANKTUNE" merge --model "$LLAMA" --adapter "$DORA" --out "$WORK/merged_bad" --dtype float8
[ ! -e "$WORK/merged_bad" ] && pass "nothing written for a bad --dtype" || fail "merged_bad exists"

# merge with a modules_to_save copy of a tied head (qwen2 ties): the merged head has a weight of
# its own, so config.json must say tie_word_embeddings: false (else loading would tie it again).
QWEN2="$SHARED/fixtures/hf-tiny/qwen2"
mkdir -p "$WORK/head_adapter"
/usr/bin/python3 - "$WORK/head_adapter" <<'PY'
import json, struct, sys
import numpy as np
out = sys.argv[1]
rng = np.random.default_rng(0)
tensors = {"base_model.model.lm_head.weight": rng.normal(0, 1, (256, 64)).astype(np.float32)}
for layer in (0, 1):
    tensors[f"base_model.model.model.layers.{layer}.self_attn.q_proj.lora_A.weight"] = np.zeros((2, 64), np.float32)
    tensors[f"base_model.model.model.layers.{layer}.self_attn.q_proj.lora_B.weight"] = np.zeros((64, 2), np.float32)
header, data = {}, b""
for name, t in tensors.items():  # safetensors: a JSON header of offsets, then the raw bytes
    header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [len(data), len(data) + t.nbytes]}
    data += t.tobytes()
text = json.dumps(header).encode()
open(out + "/adapter_model.safetensors", "wb").write(struct.pack("<Q", len(text)) + text + data)
json.dump({"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["q_proj"],
           "modules_to_save": ["lm_head"], "task_type": "CAUSAL_LM"}, open(out + "/adapter_config.json", "w"))
PY
"$RANKTUNE" merge --model "$QWEN2" --adapter "$WORK/head_adapter" --out "$WORK/merged_head" >/dev/null 2>&1 &&
  grep -q '"tie_word_embeddings": false' "$WORK/merged_head/config.json" &&
  pass "merging a copy of a tied head unties it in config.json" || fail "merged tied head: $(cat "$WORK/merged_head/config.json" 2>&1 | head -5)"
with_adapter=$("$RANKTUNE" generate --model "$QWEN2" --adapter "$WORK/head_adapter" --prompt-ids "1 5 17" --max-new-tokens 12 --print-ids 2>/dev/null)
merged=$("$RANKTUNE" generate --model "$WORK/merged_head" --prompt-ids "1 5 17" --max-new-tokens 12 --print-ids)
base=$("$RANKTUNE" generate --model "$QWEN2" --prompt-ids "1 5 17" --max-new-tokens 12 --print-ids)
[ -n "$merged" ] && [ "$with_adapter" = "$merged" ] && [ "$merged" != "$base" ] && pass "the merged untied head generates as the adapter" ||
  fail "merged head: $merged vs $with_adapter (base $base)"

# Mixture of experts: PEFT's LoRA on Mixtral's experts merges into a model that generates as the
# adapter does; inspect reads DeepSeek-V2 (MLA); an expert count that disagrees with the router.
MOE="$SHARED/fixtures/hf-tiny-moe"
if [ -d "$MOE/mixtral_lora_experts" ]; then
  "$RANKTUNE" merge --model "$MOE/mixtral_tiny" --adapter "$MOE/mixtral_lora_experts" --out "$WORK/merged_moe" >/dev/null &&
    pass "merge of a LoRA on Mixtral's experts" || fail "merge moe"
  with_adapter=$("$RANKTUNE" generate --model "$MOE/mixtral_tiny" --adapter "$MOE/mixtral_lora_experts" --prompt-ids "1 9 33" --max-new-tokens 12 --print-ids 2>/dev/null)
  merged=$("$RANKTUNE" generate --model "$WORK/merged_moe" --prompt-ids "1 9 33" --max-new-tokens 12 --print-ids)
  [ -n "$merged" ] && [ "$with_adapter" = "$merged" ] && pass "the merged Mixtral generates as the adapter" ||
    fail "merged moe: $merged vs $with_adapter"
  "$RANKTUNE" inspect "$MOE/deepseek_v2_tiny" >"$WORK/inspect_moe.json" && grep -q '"kv_cache_bytes_per_token": 288' "$WORK/inspect_moe.json" &&
    grep -q '"per_token": 3' "$WORK/inspect_moe.json" && pass "inspect DeepSeek-V2: latent cache, experts" ||
    fail "inspect deepseek"
  mkdir -p "$WORK/experts" && ln -s "$MOE/mixtral_tiny/model.safetensors" "$WORK/experts/model.safetensors"
  sed 's/"num_local_experts": 8/"num_local_experts": 6/' "$MOE/mixtral_tiny/config.json" >"$WORK/experts/config.json"
  expect_failure "an expert count that disagrees with the router" "experts/config.json: 'num_local_experts': is 6 but the checkpoint's model.layers.0.block_sparse_moe.gate.weight has shape \[8, 64\]" \
    "$RANKTUNE" inspect "$WORK/experts"
else
  echo "skip: $MOE is absent (MoE checks)"
fi

# ---- malformed input ---------------------------------------------------------------------------
broken() {  # a copy of the llama fixture to damage
  rm -rf "$WORK/$1" && cp -r "$LLAMA" "$WORK/$1" && chmod -R u+w "$WORK/$1"
}
broken truncated
head -c 5000 "$LLAMA/model.safetensors" >"$WORK/truncated/model.safetensors"
expect_failure "truncated safetensors" "truncated/model.safetensors" "$RANKTUNE" inspect "$WORK/truncated"

broken header
printf '\xff\xff\xff\x7f\x00\x00\x00\x00{}' >"$WORK/header/model.safetensors"
expect_failure "header length past the end" "header/model.safetensors" "$RANKTUNE" inspect "$WORK/header"

broken badjson
printf '{"architectures": ["LlamaForCausalLM"], "hidden_size": ' >"$WORK/badjson/config.json"
expect_failure "invalid config.json" "badjson/config.json" "$RANKTUNE" generate --model "$WORK/badjson" --prompt-ids 1 --max-new-tokens 1

broken arch
sed 's/LlamaForCausalLM/BertForMaskedLM/; s/"llama"/"bert"/' "$LLAMA/config.json" >"$WORK/arch/config.json"
expect_failure "unsupported architecture" "supported architectures" "$RANKTUNE" inspect "$WORK/arch"

broken shape
sed 's/"intermediate_size": 172/"intermediate_size": 170/' "$LLAMA/config.json" >"$WORK/shape/config.json"
expect_failure "a size that disagrees with the weights" "shape/config.json: 'intermediate_size': is 170 but the checkpoint's model.layers.0.mlp.gate_proj.weight has shape \[172, 64\]" \
  "$RANKTUNE" generate --model "$WORK/shape" --prompt-ids 1 --max-new-tokens 1

broken layers
sed 's/"num_hidden_layers": 2/"num_hidden_layers": 3/' "$LLAMA/config.json" >"$WORK/layers/config.json"
expect_failure "more layers than the checkpoint holds" "layers/config.json: 'num_hidden_layers': is 3 but the checkpoint .* holds 2 layers" \
  "$RANKTUNE" generate --model "$WORK/layers" --prompt-ids 1 --max-new-tokens 1

# Huge sizes fail as config.json is read, before anything is allocated: quickly and in little memory.
# expect_small_failure NAME PATTERN KEY VALUE: inspect and generate fail naming the key; peak RSS < 1 GB.
expect_small_failure() {
  local name="$1" pattern="$2" key="$3" value="$4"
  broken "huge_$key"
  /usr/bin/python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c[sys.argv[2]]=int(sys.argv[3]); json.dump(c, open(p, 'w'))" \
    "$WORK/huge_$key/config.json" "$key" "$value"
  for command in inspect generate; do
    local args=("$WORK/huge_$key")
    [ "$command" = generate ] && args=(--model "$WORK/huge_$key" --prompt-ids 1 --max-new-tokens 1)
    expect_failure "$name ($command)" "$pattern" /usr/bin/time -f "%M" -o "$WORK/rss" "$RANKTUNE" "$command" "${args[@]}"
    local rss_kb
    rss_kb=$(tail -1 "$WORK/rss")
    [ "$rss_kb" -lt 1048576 ] && pass "$name ($command): peak RSS ${rss_kb} kB" || fail "$name ($command): peak RSS ${rss_kb} kB"
  done
}
expect_small_failure "vocab_size 2**40" "huge_vocab_size/config.json: 'vocab_size': is 1099511627776, more than ranktune's limit" \
  vocab_size 1099511627776
expect_small_failure "num_hidden_layers 10**9" "huge_num_hidden_layers/config.json: 'num_hidden_layers': is 1000000000, more than ranktune's limit" \
  num_hidden_layers 1000000000
expect_small_failure "vocab_size under the limit but not the weights'" "'vocab_size': is 16000000 but the checkpoint's model.embed_tokens.weight has shape \[256, 64\]" \
  vocab_size 16000000

# Token ids are checked against the vocabulary (256 here), naming the id and the size.
expect_failure "prompt id outside the vocabulary" "token id 256 (prompt 0, position 1) is outside the vocabulary: vocab_size is 256, so ids are 0 to 255" \
  "$RANKTUNE" generate --model "$LLAMA" --prompt-ids "1 256" --max-new-tokens 1 --print-ids

broken pickle
rm "$WORK"/pickle/*.safetensors && echo "pickle" >"$WORK/pickle/pytorch_model.bin"
expect_failure "pickle checkpoint refused" "arbitrary code" "$RANKTUNE" inspect "$WORK/pickle"

expect_failure "adapter for another model" "does not fit" "$RANKTUNE" generate --model "$SHARED/fixtures/hf-tiny/gpt2" --adapter "$DORA" --prompt-ids 1 --max-new-tokens 1
expect_failure "missing model directory" "not a model directory" "$RANKTUNE" generate --model "$WORK/nope" --prompt-ids 1 --max-new-tokens 1
expect_failure "inspect of a config.json says what the file is" "config.json: is a model's config.json, not a safetensors file" \
  "$RANKTUNE" inspect "$LLAMA/config.json"
printf 'x' >"$WORK/a_file"
expect_failure "merge --out under a regular file" "a_file/merged: cannot be created: .*a_file is a regular file, not a directory (nothing was written)" \
  "$RANKTUNE" merge --model "$LLAMA" --adapter "$DORA" --out "$WORK/a_file/merged"
[ "$(cat "$WORK/a_file")" = "x" ] && ! ls "$WORK"/a_file.* >/dev/null 2>&1 && pass "nothing written beside --out" || fail "merge wrote beside a_file"
expect_failure "bad prompt ids" "not a token id" "$RANKTUNE" generate --model "$LLAMA" --prompt-ids "1 x" --max-new-tokens 1 --print-ids

if [ "$failures" -ne 0 ]; then
  echo "$failures CLI check(s) failed"
  exit 1
fi
echo "all CLI checks passed"
