"""Adapters move between ranktune and real Hugging Face PEFT 0.12 (transformers 4.40), both ways,
for every class of adapter whose file semantics differ: trained biases (bias="all" and
"lora_only"), modules_to_save (lm_head on tied and untied models, tied embeddings), DoRA and
GPT-2's Conv1D layers (fan_in_fan_out). Each side's logits for the same ids agree to 1e-5.

PEFT runs in a subprocess with the reference environment (../shared/tools/hfref builds it):
`$RANKTUNE_HFREF/bin/python` (default `$HOME/hfref`). Without it these tests skip.
"""

import json
import pathlib

import pytest
import torch

import ranktune
from conftest import HF_TINY, hfref_python, need, run_hfref_jobs

HERE = pathlib.Path(__file__).resolve().parent
IDS = [[1, 5, 17, 42, 99, 3, 250, 7], [1, 9, 8, 7, 6, 5, 4, 3]]
TOLERANCE = 1e-5

# name -> (fixture model, LoraConfig fields). qwen2 and gpt2 tie their embeddings; llama does not.
CASES = {
    "bias_all": ("qwen2", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], bias="all")),
    "bias_lora_only": ("qwen2", dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj"], bias="lora_only")),
    "lm_head_tied": ("qwen2", dict(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"])),
    "embed_tokens_tied": ("qwen2", dict(r=4, target_modules=["o_proj"], modules_to_save=["embed_tokens"])),
    "lm_head_untied": ("llama", dict(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head", "norm"])),
    "dora": ("llama", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=True)),
    "gpt2_fan_in_fan_out": ("gpt2", dict(r=4, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True, bias="all")),
}


def run_hfref(jobs, tmp: pathlib.Path):
    """Runs hfref_peft.py on `jobs`; returns the warnings PEFT gave for each job."""
    stdout = run_hfref_jobs(HERE / "hfref_peft.py", jobs, tmp)
    return {int(k): v for k, v in json.loads(stdout.strip().splitlines()[-1]).items()}


def logits_of(path: pathlib.Path) -> torch.Tensor:
    return ranktune.safetensors.load_file(str(path))["logits"]


def perturb_trainable(model, seed: int):
    """Moves every trainable tensor (adapters, biases, modules_to_save copies) off its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.1)


@pytest.fixture(scope="module")
def ranktune_to_peft(tmp_path_factory):
    """Adapters trained (perturbed) and saved by ranktune, then loaded by PEFT: per case, ranktune's
    logits, PEFT's logits, PEFT's warnings and the adapter directory."""
    hfref_python()
    tmp = tmp_path_factory.mktemp("ranktune_to_peft")
    results, jobs = {}, []
    for i, (case, (family, fields)) in enumerate(CASES.items()):
        base = need(HF_TINY / family)
        model = ranktune.AutoModelForCausalLM.from_pretrained(base)
        peft_model = ranktune.get_peft_model(model, ranktune.LoraConfig(**fields))
        perturb_trainable(peft_model, seed=i)
        adapter = tmp / case
        peft_model.save_pretrained(adapter)
        with torch.no_grad():
            ours = peft_model(torch.tensor(IDS)).logits
        results[case] = {"ours": ours, "adapter": adapter}
        jobs.append({"action": "load", "model": str(base), "adapter": str(adapter), "ids": IDS,
                     "out": str(tmp / f"{case}.safetensors")})
    warnings = run_hfref(jobs, tmp)
    for i, case in enumerate(CASES):
        results[case]["peft"] = logits_of(tmp / f"{case}.safetensors")
        results[case]["warnings"] = warnings[i]
    return results


@pytest.fixture(scope="module")
def peft_to_ranktune(tmp_path_factory):
    """Adapters trained (perturbed) and saved by PEFT: per case, PEFT's logits and the directory."""
    hfref_python()
    tmp = tmp_path_factory.mktemp("peft_to_ranktune")
    jobs = []
    for i, (case, (family, fields)) in enumerate(CASES.items()):
        jobs.append({"action": "save", "model": str(need(HF_TINY / family)), "config": fields, "seed": i,
                     "adapter": str(tmp / case), "ids": IDS, "out": str(tmp / f"{case}.safetensors"),
                     # PEFT 0.12 saves no bias with lora_only, so a trained one could not travel.
                     "skip_biases": fields.get("bias") == "lora_only"})
    run_hfref(jobs, tmp)
    return {case: {"peft": logits_of(tmp / f"{case}.safetensors"), "adapter": tmp / case} for case in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_peft_loads_what_ranktune_saves(ranktune_to_peft, case):
    r = ranktune_to_peft[case]
    difference = (r["ours"] - r["peft"]).abs().max().item()
    assert difference < TOLERANCE, f"{case}: max |logits difference| {difference:.3g}"
    assert not any("fan_in_fan_out" in w for w in r["warnings"]), r["warnings"]
    config = json.loads((r["adapter"] / "adapter_config.json").read_text())
    family = CASES[case][0]
    assert config["base_model_name_or_path"] == str(HF_TINY / family)
    assert config["task_type"] == "CAUSAL_LM"
    assert config["fan_in_fan_out"] == (family == "gpt2")


@pytest.mark.parametrize("case", list(CASES))
def test_ranktune_loads_what_peft_saves(peft_to_ranktune, case):
    r = peft_to_ranktune[case]
    family = CASES[case][0]
    model = ranktune.AutoModelForCausalLM.from_pretrained(need(HF_TINY / family))
    peft_model = ranktune.PeftModel.from_pretrained(model, r["adapter"])
    with torch.no_grad():
        ours = peft_model(torch.tensor(IDS)).logits
    difference = (ours - r["peft"]).abs().max().item()
    assert difference < TOLERANCE, f"{case}: max |logits difference| {difference:.3g}"


def test_a_tied_head_copy_leaves_the_embeddings_as_peft_does(ranktune_to_peft):
    # The same file in both libraries, and in ranktune the embeddings (and so the input side) untouched.
    model = ranktune.AutoModelForCausalLM.from_pretrained(need(HF_TINY / "qwen2"))
    embeddings = dict(model.named_parameters())["model.embed_tokens.weight"].clone()
    peft_model = ranktune.PeftModel.from_pretrained(model, ranktune_to_peft["lm_head_tied"]["adapter"])
    params = dict(peft_model.named_parameters())
    assert torch.equal(params["model.embed_tokens.weight"], embeddings)
    assert "lm_head.modules_to_save.default.weight" in params
    assert not torch.equal(params["lm_head.modules_to_save.default.weight"], embeddings)


def test_an_adapter_for_another_model_is_refused_briefly_and_loads_nothing(ranktune_to_peft):
    model = ranktune.AutoModelForCausalLM.from_pretrained(need(HF_TINY / "gpt2"))
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(ranktune.Error) as error:
        ranktune.PeftModel.from_pretrained(model, ranktune_to_peft["dora"]["adapter"])
    message = str(error.value)
    assert "wrong base model" in message and "nothing was loaded" in message
    assert len(message) < 1500, message
    after = dict(model.named_parameters())
    assert after.keys() == before.keys() and all(torch.equal(after[n], before[n]) for n in before)
