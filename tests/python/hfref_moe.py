"""Runs the reference implementations of the mixture-of-experts models (transformers 4.40 for
Mixtral / Qwen2-MoE, DeepSeek's own modeling_deepseek.py for DeepSeek-V3) for test_moe.py:

    $HFREF/bin/python hfref_moe.py jobs.json

jobs.json is a list of jobs; each writes `out` (safetensors: logits, and loss / aux_loss when asked):
  {"action": "aux_loss", "model": DIR, "ids": [[...]], "mask": [[...]] or null, "labels": [[...]], "out": FILE}
      AutoModelForCausalLM with output_router_logits=True: logits, loss, aux_loss.
  {"action": "deepseek_v3", "remote_code": DIR, "config": {...}, "save": DIR, "ids": [[...]], "seed": N,
   "out": FILE}
      A random DeepseekV3ForCausalLM from DeepSeek's own code (imported from DIR/deepseek_v3),
      e_score_correction_bias filled, saved with save_pretrained to `save`; its eval-mode logits.
"""

import json
import sys

import torch
from safetensors.torch import save_file


def aux_loss(job):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(job["model"], attn_implementation="eager").eval()
    ids = torch.tensor(job["ids"])
    mask = None if job.get("mask") is None else torch.tensor(job["mask"])
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=torch.tensor(job["labels"]), output_router_logits=True)
    save_file({"logits": out.logits.contiguous(), "loss": out.loss.reshape(1), "aux_loss": out.aux_loss.reshape(1)},
              job["out"])


def deepseek_v3(job):
    sys.path.insert(0, job["remote_code"])
    from deepseek_v3.configuration_deepseek import DeepseekV3Config
    from deepseek_v3.modeling_deepseek import DeepseekV3ForCausalLM

    torch.manual_seed(job["seed"])
    config = DeepseekV3Config(**job["config"])
    config._attn_implementation = "eager"
    model = DeepseekV3ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("e_score_correction_bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith("mlp.gate.weight"):
                p.copy_(torch.randn_like(p) * 0.5)  # wide routers: clear top-k margins
    model.save_pretrained(job["save"], safe_serialization=True)
    with torch.no_grad():
        logits = model(torch.tensor(job["ids"])).logits
    save_file({"logits": logits.contiguous()}, job["out"])


def main():
    for job in json.loads(open(sys.argv[1]).read()):
        {"aux_loss": aux_loss, "deepseek_v3": deepseek_v3}[job["action"]](job)


if __name__ == "__main__":
    main()
