"""ranktune: LoRA/DoRA fine-tuning in C++ (LibTorch), with a transformers/PEFT-style Python API.

    import torch, ranktune

    model = ranktune.AutoModelForCausalLM.from_pretrained("path/to/model", dtype=torch.float32)
    tokenizer = ranktune.AutoTokenizer.from_pretrained("path/to/model")
    model = ranktune.get_peft_model(model, ranktune.LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    model.print_trainable_parameters()
    out = model(**tokenizer("Q: 2+2?", return_tensors="pt"))
    model.save_pretrained("runs/my-adapter")

Tensors cross into C++ as ``torch.Tensor`` sharing memory, with autograd intact: a loss computed
in Python from ranktune's logits backpropagates into the adapter weights. See docs/python.md.
"""

import os as _os

# torch must be imported before the extension: its tensor casters need torch's Python types.
import torch as _torch  # noqa: F401,E402  (imported for its side effect)

# Templates packaged next to this file (pip installs) are found by name like the source tree's.
_templates_dir = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_templates")
if _os.path.isdir(_templates_dir):
    _paths = [p for p in _os.environ.get("RANKTUNE_TEMPLATE_PATH", "").split(":") if p]
    if _templates_dir not in _paths:
        _os.environ["RANKTUNE_TEMPLATE_PATH"] = ":".join(_paths + [_templates_dir])

from . import _core  # noqa: E402
from ._core import Error  # noqa: E402
# Subclasses of Error that are also the built-in type (not in __all__: a star import must not shadow
# the built-ins).
from ._core import IndexError, TypeError  # noqa: E402,A004

Error.__doc__ = ("ranktune's error for bad input (a config value, a malformed file, a missing tensor, a tensor of the "
                 "wrong shape): the message names the file, the line and the key. A ValueError and a RuntimeError.")
IndexError.__doc__ = "A ranktune.Error that is also an IndexError (an index out of range in LibTorch)."
TypeError.__doc__ = "A ranktune.Error that is also a TypeError (a tensor of the wrong type in LibTorch)."

__version__ = _core.__version__

from .answers import answers_match, extract, extract_answer, normalize_number  # noqa: E402
from .modeling import AutoModelForCausalLM, CausalLM, CausalLMOutput, GenerateOutput, ModelConfig  # noqa: E402
from .peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from .tokenization import AutoTokenizer, BatchEncoding, Tokenizer  # noqa: E402
from .training import Trainer, TrainingArguments, TrainOutput  # noqa: E402
from .grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from .retrieval import BM25Retriever  # noqa: E402
from . import gsm8k, retrieval, rl, safetensors, templates, tools  # noqa: E402
from . import torch  # noqa: E402,F811  (ranktune.torch: adapters for ordinary torch.nn.Modules)

configure_threads = _core.configure_threads

# LibTorch starts with one intra-op thread on some machines (this one among them), which makes
# every model call several times slower than it need be: use every core unless the user pinned
# the count through the environment (OMP_NUM_THREADS, or RANKTUNE_NUM_THREADS which
# configure_threads reads). torch.set_num_threads / configure_threads(n) change it afterwards.
if "OMP_NUM_THREADS" not in _os.environ:
    configure_threads()

__all__ = [
    "AutoModelForCausalLM",
    "AutoTokenizer",
    "BM25Retriever",
    "BatchEncoding",
    "CausalLM",
    "CausalLMOutput",
    "Error",
    "GRPOConfig",
    "GRPOTrainer",
    "GenerateOutput",
    "LoraConfig",
    "ModelConfig",
    "PeftModel",
    "Tokenizer",
    "TrainOutput",
    "Trainer",
    "TrainingArguments",
    "answers_match",
    "configure_threads",
    "extract",
    "extract_answer",
    "get_peft_model",
    "gsm8k",
    "normalize_number",
    "retrieval",
    "rl",
    "safetensors",
    "templates",
    "tools",
    "torch",
]
