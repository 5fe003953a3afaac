#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/*.cpp) from the repository's own files and the
../shared fixtures, when present: build-fuzz/seeds/<target>/. Large files are cut down to small
valid ones (a few tensors, a few hundred tokens) so that the fuzzer mutates structure, not bulk.
Usage: make_seeds.py REPO_DIR OUT_DIR"""
import glob
import json
import os
import struct
import sys

repo, out = sys.argv[1], sys.argv[2]
shared = os.path.join(repo, "..", "shared")


def files(*patterns):
    found = []
    for pattern in patterns:
        found += glob.glob(os.path.join(repo, pattern), recursive=True)
        found += glob.glob(os.path.join(shared, pattern), recursive=True)
    return sorted(set(os.path.realpath(f) for f in found))


def write(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def small_safetensors(path, keep=3):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        new, blobs, offset = {}, b"", 0
        if "__metadata__" in header:
            new["__metadata__"] = header.pop("__metadata__")
        for name in sorted(header)[:keep]:
            info = header[name]
            begin, end = info["data_offsets"]
            if end - begin > 4096:
                continue
            f.seek(base + begin)
            blobs += f.read(end - begin)
            new[name] = dict(info, data_offsets=[offset, offset + end - begin])
            offset += end - begin
    text = json.dumps(new).encode()
    return struct.pack("<Q", len(text)) + text + blobs


def small_tokenizer(path, keep=300):
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    model = tok.get("model") or {}
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        kept = dict(sorted(vocab.items(), key=lambda kv: kv[1])[:keep])
        model["vocab"] = kept
        merges = []
        for m in model.get("merges", []):
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            if a in kept and b in kept and a + b in kept:
                merges.append(m)
        model["merges"] = merges
    elif isinstance(vocab, list):
        model["vocab"] = vocab[:keep]
    tok["added_tokens"] = [t for t in tok.get("added_tokens", []) if t.get("id", 0) < keep]
    return json.dumps(tok, ensure_ascii=False)


for i, p in enumerate(files("**/*.safetensors")):
    try:
        write("safetensors", f"seed{i}", small_safetensors(p))
    except (OSError, ValueError, KeyError):
        pass
write("safetensors_index", "seed0", json.dumps(
    {"metadata": {"total_size": 8}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}))
for i, p in enumerate(files("**/*.safetensors.index.json")):
    write("safetensors_index", f"seed{i + 1}", open(p, "rb").read()[:8192])
for i, p in enumerate(files("**/config.json")):
    if os.path.basename(p) == "config.json":
        write("model_config", f"seed{i}", open(p, "rb").read())
for i, p in enumerate(files("**/adapter_config.json")):
    write("adapter_config", f"seed{i}", open(p, "rb").read())
for i, p in enumerate(files("**/tokenizer.json")):
    write("tokenizer_json", f"seed{i}", small_tokenizer(p))
for i, p in enumerate(files("examples/**/*.yaml", "tests/**/*.yaml")):
    target = "template" if "/templates/" in p else "recipe"
    write(target, f"seed{i}", open(p, "rb").read())
write("recipe", "seed_overrides", open(os.path.join(repo, "examples/gsm8k/lora.yaml"), "rb").read()
      + b"\0adapter.r=4\ntrain.max_steps=3\nadapter.target_modules=[q_proj]\n")
for i, p in enumerate(files("**/*.jsonl")):
    with open(p, "rb") as f:
        lines = b"".join(f.readline() for _ in range(3))
    write("jsonl", f"seed{i}", b"\0" + lines)
    write("jsonl", f"seed{i}_strip", b"\2" + lines)
write("jsonl", "seed_fields", b"\1" + json.dumps(
    {"question": "2+3?", "rationale": "2+3 = <<2+3=5>>5", "answer": "5"}).encode() + b"\n")
# SFT records (byte 0 bit 4): each format's file detected (0x10) and read as its own format (bits 5-7).
sft_formats = ["messages", "prompt_completion", "text", "alpaca"]
for p in files("tests/data/sft/*.jsonl"):
    with open(p, "rb") as f:
        lines = b"".join(f.readline() for _ in range(3))
    stem = os.path.splitext(os.path.basename(p))[0]
    write("jsonl", f"sft_{stem}", b"\x10" + lines)
    if stem in sft_formats:
        write("jsonl", f"sft_{stem}_named", bytes([0x10 | (sft_formats.index(stem) + 1) << 5]) + lines)
# chat_template: byte 0 picks add_generation_prompt/tools, the rest is a template (real models' from
# ../shared/chat_templates, and the one-construct cases of tests/data/chat_templates).
for i, p in enumerate(files("**/chat_templates/*/tokenizer_config.json")):
    template = json.load(open(p, encoding="utf-8")).get("chat_template")
    if isinstance(template, str):
        for flags in (0, 3):
            write("chat_template", f"seed{i}_{flags}", bytes([flags]) + template.encode())
for i, p in enumerate(files("tests/data/chat_templates/*.json")):
    for j, case in enumerate(json.load(open(p, encoding="utf-8"))):
        write("chat_template", f"case{i}_{j}", b"\1" + case["template"].encode())
