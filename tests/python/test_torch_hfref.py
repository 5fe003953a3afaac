"""ranktune.torch against the real Hugging Face libraries (transformers 4.40 + PEFT 0.12 from
hfref, ../shared/tools/hfref): an adapter saved by ranktune.torch loads in PEFT with the same
outputs, and one saved by PEFT loads in ranktune.torch — on a plain torch module and on
transformers' GPT-2 (Conv1D layers, tied lm_head). Skips when hfref is absent ($RANKTUNE_HFREF,
default $HOME/hfref).

Each script runs in its own process under hfref's Python (the same Debian torch) and prints, per
case, the largest output difference each way, or the error.
"""

import json
import os
import pathlib
import subprocess

import pytest

import ranktune

HFREF = pathlib.Path(os.environ.get("RANKTUNE_HFREF", pathlib.Path.home() / "hfref"))

COMMON = r"""
import copy, json, sys, tempfile, warnings
import torch
from torch import nn
import peft, ranktune

def perturb(named_parameters, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in named_parameters:
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * 0.3)

def both_ways(fresh, config, inputs, workdir):
    out = {}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours = ranktune.torch.inject(fresh(), ranktune.LoraConfig(**config))
        out["warnings"] = [str(w.message) for w in caught]
        perturb(ours.named_parameters())
        ranktune.torch.save_adapter(ours, workdir + "/ours")
        theirs = peft.PeftModel.from_pretrained(fresh(), workdir + "/ours")
        with torch.no_grad():
            out["to_peft"] = (logits(ours(inputs)) - logits(theirs(inputs))).abs().max().item()
    except Exception as e:
        out["to_peft_error"] = f"{type(e).__name__}: {e}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = peft.get_peft_model(fresh(), peft.LoraConfig(**config))
        perturb(theirs.named_parameters())
        theirs.save_pretrained(workdir + "/theirs")
        ours = ranktune.torch.load_adapter(fresh(), workdir + "/theirs")
        # What the file means to PEFT: its own reload (PEFT 0.12 saves no lora_only biases, so
        # its in-memory model and its file differ there).
        reloaded = peft.PeftModel.from_pretrained(fresh(), workdir + "/theirs")
        with torch.no_grad():
            out["from_peft"] = (logits(ours(inputs)) - logits(reloaded(inputs))).abs().max().item()
    except Exception as e:
        out["from_peft_error"] = f"{type(e).__name__}: {e}"
    return out

def run(cases, fresh, inputs):
    results = {}
    for name, config in cases.items():
        with tempfile.TemporaryDirectory() as workdir:
            results[name] = both_ways(fresh, config, inputs, workdir)
    print(json.dumps(results))
"""

PLAIN = COMMON + r"""
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 10)
        self.fc2 = nn.Linear(10, 8)
        self.lm_head = nn.Linear(8, 5)

    def forward(self, x):
        return self.lm_head(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))

def logits(y):
    return y

torch.manual_seed(0)
state = copy.deepcopy(Net().state_dict())
def fresh():
    net = Net()
    net.load_state_dict(state)
    return net

targets = ["fc1", "fc2"]
run({
    "lora": dict(r=2, lora_alpha=4, target_modules=targets),
    "dora": dict(r=2, lora_alpha=4, target_modules=targets, use_dora=True),
    "rslora_patterns": dict(r=2, lora_alpha=4, target_modules=targets, use_rslora=True, rank_pattern={"fc2": 3},
                            alpha_pattern={"fc1": 7}),
    "modules_to_save": dict(r=2, target_modules=["fc1"], modules_to_save=["lm_head"]),
    "bias_lora_only": dict(r=2, target_modules=["fc1"], bias="lora_only"),
    "bias_all": dict(r=2, target_modules=["fc1"], bias="all", use_dora=True),
}, fresh, torch.randn(3, 12))
"""

GPT2 = COMMON + r"""
from transformers import GPT2Config, GPT2LMHeadModel

config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2)
torch.manual_seed(0)
state = copy.deepcopy(GPT2LMHeadModel(config).state_dict())
def fresh():
    model = GPT2LMHeadModel(config)
    model.load_state_dict(state)
    return model.eval()

def logits(out):
    return out.logits

convs = ["c_attn", "c_proj", "c_fc"]
run({
    "lora": dict(r=4, lora_alpha=8, target_modules=convs),
    "dora": dict(r=4, lora_alpha=8, target_modules=convs, use_dora=True),
    "tied_lm_head_to_save": dict(r=4, target_modules=["c_attn"], modules_to_save=["lm_head"]),
}, fresh, torch.tensor([[1, 5, 9, 2, 7], [3, 3, 8, 0, 1]]))
"""


def run_hfref(script):
    python = HFREF / "bin" / "python"
    if not python.exists():
        pytest.skip(f"hfref (transformers + PEFT) is absent: {python} (../shared/tools/hfref/README.md builds it)")
    package_root = pathlib.Path(ranktune.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(package_root))
    done = subprocess.run([str(python), "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def plain_results():
    return run_hfref(PLAIN)


@pytest.fixture(scope="module")
def gpt2_results():
    return run_hfref(GPT2)


def check_both_ways(result, tol=1e-6):
    assert "to_peft_error" not in result, result["to_peft_error"]
    assert "from_peft_error" not in result, result["from_peft_error"]
    assert result["to_peft"] < tol and result["from_peft"] < tol, result


@pytest.mark.parametrize("case", ["lora", "dora", "rslora_patterns", "modules_to_save"])
def test_plain_module_adapters_load_both_ways_with_equal_outputs(plain_results, case):
    check_both_ways(plain_results[case])


# PEFT names an adapted layer's bias `<module>.base_layer.bias`; the C++ writer/reader on this
# branch use `<module>.bias`. The interop branch's src/peft/adapter_io.cpp changes them; once it is
# merged this passes and the strict marker must go.
@pytest.mark.parametrize("case", ["bias_lora_only", "bias_all"])
def test_plain_module_trained_biases_load_both_ways_with_equal_outputs(plain_results, case):
    check_both_ways(plain_results[case])


@pytest.mark.parametrize("case", ["lora", "dora", "tied_lm_head_to_save"])
def test_gpt2_conv1d_adapters_load_both_ways_with_equal_outputs(gpt2_results, case):
    result = gpt2_results[case]
    check_both_ways(result, tol=1e-5)
    assert any("target module is `Conv1D`. Setting fan_in_fan_out to True" in w for w in result["warnings"])
