"""A quantized frozen base from Python: from_pretrained(quantize=...), LoRA training on top, and
bad values (the C++ tests check the formats and bounds in detail)."""

import pytest
import torch

import ranktune
from conftest import HF_TINY, QUICKSTART_DATA, QUICKSTART_MODEL, need


def _relative_error(a, b):
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


@pytest.mark.parametrize("quantize,limit", [("int8", 0.05), ("nf4", 0.5)])
def test_quantized_model_logits_stay_near_full_precision(quantize, limit):
    path = need(HF_TINY / "llama")
    dense = ranktune.AutoModelForCausalLM.from_pretrained(path)
    quantized = ranktune.AutoModelForCausalLM.from_pretrained(path, quantize=quantize)
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        error = _relative_error(quantized(ids).logits, dense(ids).logits)
    # tests/cpp/model/test_quantized_model.cpp derives the bound; here: quantized, and close.
    assert 0 < error < limit
    # The quantized projections are no parameters any more: only embeddings, norms and the head.
    names = {name for name, _ in quantized.named_parameters()}
    assert "model.layers.0.self_attn.q_proj.weight" not in names
    assert "model.embed_tokens.weight" in names and "lm_head.weight" in names
    # ...but still weights of the model: counted as transformers counts them.
    assert quantized.num_parameters() == dense.num_parameters()
    assert quantized.num_parameters() > sum(p.numel() for p in quantized.parameters())


def test_lora_trains_on_a_quantized_base():
    model = ranktune.AutoModelForCausalLM.from_pretrained(need(HF_TINY / "llama"), quantize="nf4", double_quant=True)
    peft_model = ranktune.get_peft_model(model, ranktune.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(6):
        loss = peft_model(ids, labels=ids).loss
        losses.append(float(loss))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < losses[0] - 0.1, losses


def test_bad_quantize_values_name_the_argument_and_the_allowed_ones():
    path = need(HF_TINY / "llama")
    with pytest.raises(ranktune.Error, match=r"quantize=.*'int4'.*none, int8, nf4"):
        ranktune.AutoModelForCausalLM.from_pretrained(path, quantize="int4")
    with pytest.raises(ranktune.Error, match="double_quant=True needs quantize='nf4'"):
        ranktune.AutoModelForCausalLM.from_pretrained(path, quantize="int8", double_quant=True)


def test_full_fine_tuning_of_a_quantized_base_is_refused(tmp_path):
    # Its projection weights are frozen: "full" would train only embeddings and norms, silently.
    model = ranktune.AutoModelForCausalLM.from_pretrained(need(QUICKSTART_MODEL), init_seed=0, quantize="int8")
    tokenizer = ranktune.AutoTokenizer.from_pretrained(QUICKSTART_MODEL)
    data = ranktune.gsm8k.load(need(QUICKSTART_DATA) / "train.jsonl", limit=8)
    args = ranktune.TrainingArguments(output_dir=tmp_path / "run", max_steps=1, batch_size=2, validation_size=2,
                                      **{"adapter.method": "full"})
    with pytest.raises(ranktune.Error, match="q_proj's weight is quantized and frozen"):
        ranktune.Trainer(model, tokenizer, args, train_dataset=data).train()
    assert not (tmp_path / "run" / "model.safetensors").exists()
