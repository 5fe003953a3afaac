"""Mixture-of-experts models through Python: the hf-tiny-moe fixtures' logits and loss, PEFT's LoRA
adapter on Mixtral's experts before and after merge, training through the routed experts, and —
with the Hugging Face reference environment (`$RANKTUNE_HFREF`, default `$HOME/hfref`) —
transformers' router aux loss and DeepSeek-V3 against DeepSeek's own modelling code.
"""

import json
import pathlib
import shutil

import pytest
import torch

import ranktune
from conftest import SHARED, hfref_python, need, run_hfref_jobs

HERE = pathlib.Path(__file__).resolve().parent
HF_TINY_MOE = SHARED / "fixtures" / "hf-tiny-moe"
REMOTE_CODE = SHARED / "tools" / "hfref" / "remote_code"


@pytest.mark.parametrize("name", ["mixtral_tiny", "qwen2_moe_tiny", "deepseek_v2_tiny"])
def test_logits_match_the_reference(name):
    path = need(HF_TINY_MOE / name)
    model = ranktune.AutoModelForCausalLM.from_pretrained(path)
    golden = ranktune.safetensors.load_file(path / "golden_logits.safetensors")
    with torch.no_grad():
        out = model(golden["input_ids"], labels=golden["input_ids"])
    assert (out.logits - golden["logits"]).abs().max() < 1e-4
    recorded = json.loads((path / "golden.json").read_text())["loss_with_labels=input_ids"]
    assert abs(float(out.loss) - recorded) < 1e-5
    assert model.config["architectures"][0] == json.loads((path / "config.json").read_text())["architectures"][0]


def test_peft_lora_on_mixtral_experts_before_and_after_merge():
    adapter = need(HF_TINY_MOE / "mixtral_lora_experts")
    model = ranktune.AutoModelForCausalLM.from_pretrained(HF_TINY_MOE / "mixtral_tiny")
    peft_model = ranktune.PeftModel.from_pretrained(model, adapter)
    golden = ranktune.safetensors.load_file(adapter / "golden_logits.safetensors")
    with torch.no_grad():
        logits = peft_model(golden["input_ids"]).logits
    assert (logits - golden["logits"]).abs().max() < 1e-4
    names = [n for n, _ in peft_model.named_parameters() if "lora_A" in n]
    assert any(".block_sparse_moe.experts.7.w2.lora_A" in n for n in names) and len(names) == 52
    merged = peft_model.merge_and_unload()
    golden_merged = ranktune.safetensors.load_file(adapter / "golden_merged_logits.safetensors")
    with torch.no_grad():
        logits = merged(golden["input_ids"]).logits
    assert (logits - golden_merged["logits"]).abs().max() < 1e-4


def test_training_step_reaches_expert_adapters_through_the_router():
    path = need(HF_TINY_MOE / "deepseek_v2_tiny")
    model = ranktune.AutoModelForCausalLM.from_pretrained(path)
    peft_model = ranktune.get_peft_model(
        model, ranktune.LoraConfig(r=4, target_modules=["kv_b_proj", "q_b_proj", "gate_proj", "up_proj", "down_proj"]))
    peft_model.train()
    ids = torch.tensor([[1, 9, 33, 71, 5, 120, 250, 17, 3, 88]])
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    losses = []
    for _ in range(4):
        loss = peft_model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    trained = {n for n, p in peft_model.named_parameters() if p.requires_grad and p.grad is not None
               and float(p.grad.abs().max()) > 0}
    assert any(".mlp.experts." in n for n in trained) and any(".mlp.shared_experts." in n for n in trained)


def run_hfref(jobs, tmp: pathlib.Path):
    run_hfref_jobs(HERE / "hfref_moe.py", jobs, tmp)


@pytest.mark.parametrize("name", ["mixtral_tiny", "qwen2_moe_tiny"])
def test_router_aux_loss_matches_transformers(name, tmp_path):
    hfref_python()
    source = need(HF_TINY_MOE / name)
    model_dir = tmp_path / name
    model_dir.mkdir()
    config = json.loads((source / "config.json").read_text())
    config["output_router_logits"] = True  # transformers computes the aux loss only then
    config["router_aux_loss_coef"] = 0.25  # large enough to show in the loss
    (model_dir / "config.json").write_text(json.dumps(config))
    shutil.copy(source / "model.safetensors", model_dir / "model.safetensors")
    ids = [[1, 9, 33, 71, 5, 120, 250, 17, 3, 88, 42, 199], [0, 0, 0, 1, 150, 31, 77, 5, 6, 201, 19, 44]]
    mask = [[1] * 12, [0, 0, 0] + [1] * 9]
    # No loss from a padding position's logits (undefined in both: the label after it too), but
    # padding's router logits are masked out of the aux loss by the attention mask.
    labels = [list(ids[0]), [-100] * 4 + ids[1][4:]]
    run_hfref([{"action": "aux_loss", "model": str(model_dir), "ids": ids, "mask": mask, "labels": labels,
                "out": str(tmp_path / "ref.st")}], tmp_path)
    reference = ranktune.safetensors.load_file(str(tmp_path / "ref.st"))
    model = ranktune.AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        out = model(torch.tensor(ids), attention_mask=torch.tensor(mask), labels=torch.tensor(labels))
    keep = torch.tensor(mask).bool()
    assert (out.logits[keep] - reference["logits"][keep]).abs().max() < 1e-4
    assert abs(float(out.aux_loss) - float(reference["aux_loss"])) < 1e-5
    assert abs(float(out.loss) - float(reference["loss"])) < 1e-5
    assert out.keys() == ["loss", "aux_loss", "logits"]


def test_deepseek_v3_matches_deepseeks_own_code(tmp_path):
    hfref_python()
    need(REMOTE_CODE / "deepseek_v3" / "modeling_deepseek.py")
    config = dict(vocab_size=300, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                  num_hidden_layers=3, num_nextn_predict_layers=0, num_attention_heads=4, num_key_value_heads=4,
                  n_shared_experts=1, n_routed_experts=8, routed_scaling_factor=2.5, kv_lora_rank=16, q_lora_rank=32,
                  qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16, topk_method="noaux_tc", n_group=4,
                  topk_group=2, num_experts_per_tok=3, moe_layer_freq=1, first_k_dense_replace=1,
                  norm_topk_prob=True, scoring_func="sigmoid", max_position_embeddings=256, rms_norm_eps=1e-6,
                  rope_theta=10000.0, initializer_range=0.05,
                  rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=64, beta_fast=32,
                                    beta_slow=1, mscale=0.8, mscale_all_dim=1.0),
                  architectures=["DeepseekV3ForCausalLM"], torch_dtype="float32")
    ids = [[1, 9, 33, 71, 5, 120, 250, 17, 3, 88, 42, 199, 7, 64, 2, 11]]
    save = tmp_path / "deepseek_v3_tiny"
    run_hfref([{"action": "deepseek_v3", "remote_code": str(REMOTE_CODE), "config": config, "save": str(save),
                "ids": ids, "seed": 3, "out": str(tmp_path / "ref.st")}], tmp_path)
    reference = ranktune.safetensors.load_file(str(tmp_path / "ref.st"))
    model = ranktune.AutoModelForCausalLM.from_pretrained(save)
    with torch.no_grad():
        logits = model(torch.tensor(ids)).logits
    assert (logits - reference["logits"]).abs().max() < 1e-4
