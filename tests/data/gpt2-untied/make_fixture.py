"""Writes this directory's tiny GPT-2 with an untied output head (tie_word_embeddings: false) and
transformers' logits for it. Run with the Hugging Face reference environment (transformers 4.40):

    $HOME/hfref/bin/python tests/data/gpt2-untied/make_fixture.py

The tests read what it writes: config.json, model.safetensors, golden.safetensors (input_ids, logits)."""

import os

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))

torch.manual_seed(0)
config = GPT2Config(vocab_size=32, n_positions=8, n_embd=8, n_layer=1, n_head=2, tie_word_embeddings=False,
                    bos_token_id=0, eos_token_id=0)
model = GPT2LMHeadModel(config).eval()
with torch.no_grad():
    for p in model.parameters():  # larger than the N(0, 0.02) init, so parity tests see real differences
        p.normal_(0.0, 0.3)
assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
model.save_pretrained(HERE, safe_serialization=True)
ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]])
with torch.no_grad():
    logits = model(ids).logits
save_file({"input_ids": ids, "logits": logits.contiguous()}, os.path.join(HERE, "golden.safetensors"))
if os.path.exists(os.path.join(HERE, "generation_config.json")):
    os.remove(os.path.join(HERE, "generation_config.json"))  # not needed by the tests
print("wrote", sorted(os.listdir(HERE)))
