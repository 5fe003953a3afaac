"""Runs Hugging Face transformers + PEFT (the reference environment, not ranktune) for
test_peft_interop.py:

    $HFREF/bin/python hfref_peft.py jobs.json

jobs.json is a list of jobs; each writes `out` (a safetensors file with the logits for `ids`):
  {"action": "save", "model": DIR, "config": {LoraConfig fields}, "adapter": DIR, "ids": [[...]],
   "seed": N, "out": FILE, "skip_biases": bool}
      get_peft_model, every trainable tensor moved off its initial value (biases too unless
      skip_biases), save_pretrained(adapter), logits.
  {"action": "load", "model": DIR, "adapter": DIR, "ids": [[...]], "out": FILE}
      PeftModel.from_pretrained(model, adapter), logits.
Prints one JSON object: job index -> the warnings PEFT gave.
"""

import json
import sys
import warnings

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def run(job):
    model = AutoModelForCausalLM.from_pretrained(job["model"])
    if job["action"] == "save":
        torch.manual_seed(job["seed"])
        peft_model = get_peft_model(model, LoraConfig(**job["config"]))
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if p.requires_grad and not (job.get("skip_biases") and name.endswith("bias")):
                    p.add_(torch.randn_like(p) * 0.1)
        peft_model.save_pretrained(job["adapter"])
    else:
        peft_model = PeftModel.from_pretrained(model, job["adapter"])
    peft_model.eval()
    with torch.no_grad():
        logits = peft_model(torch.tensor(job["ids"])).logits
    save_file({"logits": logits.contiguous()}, job["out"])


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    report = {}
    for i, job in enumerate(jobs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(job)
        report[str(i)] = [str(w.message) for w in caught]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
