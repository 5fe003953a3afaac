# Sourced by bench scripts: make_smollm2_dir DIR SHARED writes a model directory of the SmolLM2-135M
# shape (random weights: load it with model.init_seed) with GPT-2's tokenizer from SHARED
# (vocabulary 50257, near SmolLM2's 49152; SmolLM2's own tokenizer is not in ../shared).
make_smollm2_dir() {
  local dir="$1" shared="$2"
  [ -f "$shared/tokenizers/gpt-2/tokenizer.json" ] || { echo "$shared/tokenizers/gpt-2/tokenizer.json is missing (../shared)" >&2; return 1; }
  mkdir -p "$dir"
  cp "$shared/tokenizers/gpt-2/"tokenizer*.json "$dir/"
  cat >"$dir/config.json" <<JSON
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30,
 "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 50257,
 "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "max_position_embeddings": 2048, "tie_word_embeddings": true,
 "bos_token_id": 50256, "eos_token_id": 50256}
JSON
}
