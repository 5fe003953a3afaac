#!/usr/bin/python3
"""Writes an F32 or BF16 GGUF for llama.cpp from a Llama-family Hugging Face directory (config.json +
model.safetensors, F32, tied embeddings) with llama.cpp's own gguf-py, and compares llama.cpp's
logits with reference logits.

    llamacpp_gguf.py write MODEL_DIR OUT.gguf [--type f32|bf16]   (needs PYTHONPATH=$LLAMA_CPP_DIR/gguf-py)
    llamacpp_gguf.py compare REFERENCE.f32 LLAMACPP.f32 [--tolerance 1e-4]

The q and k weights are permuted as llama.cpp's convert_hf_to_gguf.py permutes them (its rotary
embedding pairs neighbouring features where Hugging Face's rotates halves). The vocabulary is a
dummy SentencePiece-style one of the model's size: the benchmarks feed token ids, never text.
bf16: the matrices are rounded to bf16 by gguf-py's own quantizer (round to nearest even, as
torch's .to(bfloat16) and ggml_compute_fp32_to_bf16 round), the 1-D norms stay F32, as
convert_hf_to_gguf.py --outtype bf16 writes them.
"""
import argparse
import json
import struct
import sys
import types

import numpy as np


def read_safetensors(path):
    """name -> numpy array, for the F32/F16/BF16 tensors of one safetensors file (no dependency)."""
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        if info["dtype"] == "F32":
            a = np.frombuffer(raw, dtype=np.float32)
        elif info["dtype"] == "F16":
            a = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {info['dtype']} (F32, F16 or BF16 expected)")
        out[name] = a.reshape(info["shape"])
    return out


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute for q (n_head) and k (n_kv_head) weights."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write(model_dir, out_path, outtype):
    sys.modules.setdefault("sentencepiece", types.ModuleType("sentencepiece"))  # gguf.vocab imports it at load
    sys.modules["sentencepiece"].SentencePieceProcessor = object
    import gguf

    config = json.load(open(f"{model_dir}/config.json"))
    weights = read_safetensors(f"{model_dir}/model.safetensors")
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    hidden, vocab = config["hidden_size"], config["vocab_size"]
    head_dim = config.get("head_dim", hidden // heads)
    if not config.get("tie_word_embeddings", False):
        raise SystemExit(f"{model_dir}: only tied embeddings are handled (tie_word_embeddings is false)")

    w = gguf.GGUFWriter(out_path, "llama")
    w.add_name("ranktune-bench")
    w.add_context_length(config.get("max_position_embeddings", 2048))
    w.add_embedding_length(hidden)
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_freq_base(config["rope_theta"])
    bf16 = outtype == "bf16"
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(3, vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] +
                      [gguf.TokenType.NORMAL] * (vocab - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def add(name, t):
        if bf16 and t.ndim >= 2:
            qtype = gguf.GGMLQuantizationType.BF16
            w.add_tensor(name, gguf.quants.quantize(np.ascontiguousarray(t), qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, np.ascontiguousarray(t))

    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    add("token_embd.weight", weights["model.embed_tokens.weight"])
    for i in range(config["num_hidden_layers"]):
        for hf, ours in names.items():
            t = weights[f"model.layers.{i}.{hf}.weight"]
            if ours == "attn_q":
                t = permute(t, heads)
            elif ours == "attn_k":
                t = permute(t, kv_heads)
            add(f"blk.{i}.{ours}.weight", t)
    add("output_norm.weight", weights["model.norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def compare(reference_path, llamacpp_path, tolerance):
    a = np.fromfile(reference_path, dtype=np.float32)
    b = np.fromfile(llamacpp_path, dtype=np.float32)
    if a.shape != b.shape:
        raise SystemExit(f"logits differ in size: {reference_path} has {a.size}, {llamacpp_path} has {b.size}")
    diff = float(np.abs(a - b).max())
    print(json.dumps({"max_abs_logit_difference": diff, "max_abs_logit": float(np.abs(a).max()), "values": int(a.size)}))
    if not diff <= tolerance:
        raise SystemExit(f"llama.cpp's logits differ from ranktune's by {diff:.3g} (tolerance {tolerance:g}): "
                         "the GGUF does not hold the same model")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    write_args = commands.add_parser("write")
    write_args.add_argument("model_dir")
    write_args.add_argument("out")
    write_args.add_argument("--type", choices=["f32", "bf16"], default="f32")
    compare_args = commands.add_parser("compare")
    compare_args.add_argument("reference")
    compare_args.add_argument("llamacpp")
    compare_args.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    if args.command == "write":
        write(args.model_dir, args.out, args.type)
    else:
        compare(args.reference, args.llamacpp, args.tolerance)
