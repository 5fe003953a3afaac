"""bf16 from Python: the Trainer with train.precision bf16 (autocast; adapter and AdamW stay fp32)
and auto (the GEMM probe in summary.json), and a model held in bf16 for generation and scoring.
Runs on the repository's quickstart model (random weights from a seed)."""

import json

import pytest
import torch

import ranktune
from conftest import QUICKSTART_DATA, QUICKSTART_MODEL, need

# The first logged loss is step 1's, before any update: fp32 and bf16 runs differ only by rounding
# (docs/performance.md, "bf16").
FIRST_LOSS_TOLERANCE = 1e-2
SMALL = {"data.max_length": 128, "data.limit": 24, "data.validation_size": 4, "eval.max_new_tokens": 0,
         "adapter.r": 4, "adapter.target_modules": "all-linear"}


def fresh_model(dtype=None):
    return ranktune.AutoModelForCausalLM.from_pretrained(need(QUICKSTART_MODEL), dtype=dtype, init_seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    return ranktune.AutoTokenizer.from_pretrained(need(QUICKSTART_MODEL))


def train(tmp_path, tokenizer, precision, **extra):
    args = ranktune.TrainingArguments(output_dir=tmp_path, precision=precision,
                                      **{"max_steps": 2, "batch_size": 4, "log_every": 1, **SMALL, **extra})
    trainer = ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=QUICKSTART_DATA / "train.jsonl",
                               progress_bar=False)
    result = trainer.train()
    assert result.status == "completed"
    return trainer, result, json.loads((tmp_path / "summary.json").read_text())


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_bf16_training_matches_fp32_and_keeps_the_adapter_fp32(tmp_path, tokenizer, method):
    _, fp32, _ = train(tmp_path / "fp32", tokenizer, "fp32", **{"adapter.method": method})
    trainer, bf16, summary = train(tmp_path / "bf16", tokenizer, "bf16", **{"adapter.method": method})
    assert summary["precision"] == {"requested": "bf16", "chosen": "bf16"}
    first_fp32, first_bf16 = fp32.metrics["train_first_loss"], bf16.metrics["train_first_loss"]
    assert abs(first_bf16 - first_fp32) / first_fp32 < FIRST_LOSS_TOLERANCE
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    saved = ranktune.safetensors.load_file(tmp_path / "bf16" / "adapter_model.safetensors")
    assert {t.dtype for t in saved.values()} == {torch.float32}


def test_auto_precision_records_the_probe(tmp_path, tokenizer):
    _, _, summary = train(tmp_path, tokenizer, "auto", max_steps=1)
    p = summary["precision"]
    assert p["requested"] == "auto"
    assert p["probe"]["fp32_gflops"] > 0 and p["probe"]["bf16_gflops"] > 0
    faster = p["probe"]["bf16_gflops"] >= p["probe"]["min_speedup"] * p["probe"]["fp32_gflops"]
    assert p["chosen"] == ("bf16" if faster else "fp32")


def test_a_bf16_model_generates_and_scores_close_to_fp32(tmp_path, tokenizer):
    fp32 = fresh_model()
    fp32.save_pretrained(tmp_path)  # the same weights, read back into bf16
    bf16 = ranktune.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    ids = torch.tensor([tokenizer.encode("Q: Ivan has 6 jars and gets 3 more. How many jars does he have?")])
    with torch.no_grad():
        loss32, loss16 = fp32(ids, labels=ids).loss.item(), bf16(ids, labels=ids).loss.item()
    assert abs(loss16 - loss32) / loss32 < FIRST_LOSS_TOLERANCE
    out = bf16.generate(ids, max_new_tokens=8)
    assert ids.shape[1] < out.shape[1] <= ids.shape[1] + 8
    assert torch.equal(out[:, : ids.shape[1]], ids)
