"""Causal language models (Llama, Mistral, Qwen2, GPT-2) running in ranktune's C++ core, behind
transformers' ``AutoModelForCausalLM`` API.

    model = ranktune.AutoModelForCausalLM.from_pretrained("path/to/model", dtype=torch.float32)
    out = model(input_ids, attention_mask=mask, labels=input_ids)     # out.logits, out.loss
    out.loss.backward()                                               # gradients reach C++ weights
    ids = model.generate(input_ids, max_new_tokens=32)

The tensors ``named_parameters()`` returns are the model's own (shared memory, shared autograd
state): an optimizer built on them in Python updates the C++ model.
"""

import json
import os
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from . import _core

__all__ = ["AutoModelForCausalLM", "CausalLM", "CausalLMOutput", "GenerateOutput", "ModelConfig"]

def _dtype_name(dtype: Union[torch.dtype, str, None]) -> str:
    """The dtype as text for the C++ side, which parses it (torch.bfloat16 -> "torch.bfloat16";
    "bf16" as given) and names the accepted spellings when it cannot; None and "auto" are float32."""
    if dtype is None or dtype == "auto":
        return "float32"
    return str(dtype)


class ModelConfig:
    """A model's configuration with Hugging Face's field names (``config.hidden_size``,
    ``config["vocab_size"]``, ``config.to_dict()``): config.json's own fields plus the values
    ranktune derives (``head_dim``, ``num_key_value_heads``, ...)."""

    def __init__(self, values: Dict[str, Any]):
        self.__dict__.update(values)

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a plain dict."""
        return dict(self.__dict__)

    def to_json_string(self) -> str:
        """The fields as JSON (keys sorted)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=list)

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def get(self, key: str, default: Any = None) -> Any:
        """The field's value, or `default`."""
        return self.__dict__.get(key, default)

    def keys(self):
        """The field names."""
        return self.__dict__.keys()

    def __repr__(self) -> str:
        return f"ModelConfig {self.to_json_string()}"


class CausalLMOutput:
    """The result of a forward pass: ``logits`` [batch, seq, vocab] and ``loss`` (a scalar, or None
    without labels); for a mixture-of-experts model with ``output_router_logits`` in its config,
    ``aux_loss`` (transformers' load-balancing loss, already in ``loss`` times
    ``router_aux_loss_coef``). Also indexable like transformers' ModelOutput (``out["logits"]``,
    ``out[0]``)."""

    __slots__ = ("loss", "aux_loss", "logits")

    def __init__(self, logits: torch.Tensor, loss: Optional[torch.Tensor] = None,
                 aux_loss: Optional[torch.Tensor] = None):
        self.logits = logits
        self.loss = loss
        self.aux_loss = aux_loss

    def to_tuple(self) -> Tuple[torch.Tensor, ...]:
        """(loss, aux_loss, logits) without the Nones, as transformers orders them."""
        return tuple(v for v in (self.loss, self.aux_loss, self.logits) if v is not None)

    def __getitem__(self, key):
        if isinstance(key, str):
            value = getattr(self, key, None) if key in self.__slots__ else None
            if value is None:
                raise KeyError(key)
            return value
        return self.to_tuple()[key]

    def keys(self) -> List[str]:
        """The fields that are set."""
        return [k for k in ("loss", "aux_loss", "logits") if getattr(self, k) is not None]

    def __repr__(self) -> str:
        loss = None if self.loss is None else float(self.loss)
        return f"CausalLMOutput(loss={loss}, logits=<{list(self.logits.shape)} {self.logits.dtype}>)"


class GenerateOutput:
    """``generate(..., return_dict_in_generate=True)``: ``sequences`` (as generate returns them),
    ``generated_tokens`` (the new ids of each row, without prompt or padding) and
    ``finish_reasons`` ("eos", "stop" or "length" per row)."""

    def __init__(self, sequences, generated_tokens: List[List[int]], finish_reasons: List[str]):
        self.sequences = sequences
        self.generated_tokens = generated_tokens
        self.finish_reasons = finish_reasons

    def __repr__(self) -> str:
        return f"GenerateOutput(finish_reasons={self.finish_reasons}, generated_tokens={self.generated_tokens})"


def _as_long_tensor(value, name: str) -> Optional[torch.Tensor]:
    if value is None:
        return None
    t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    if t.dim() != 2:
        raise _core.Error(f"{name} must be [batch, seq], got shape {list(t.shape)} (hint: {name}.unsqueeze(0))")
    if t.dtype != torch.long:
        t = t.long()
    return t


class CausalLM:
    """A ranktune causal LM (Llama, Mistral, Qwen2 or GPT-2). Create it with
    :meth:`AutoModelForCausalLM.from_pretrained` or :meth:`AutoModelForCausalLM.from_config`.

    Calling it (or :meth:`forward`) with ``input_ids`` and optionally ``attention_mask`` and
    ``labels`` returns a :class:`CausalLMOutput`; the logits and loss are what transformers
    computes for the same weights. Every projection is an adaptable ranktune layer, so
    :func:`ranktune.get_peft_model` attaches LoRA/DoRA in place.
    """

    def __init__(self, core: "_core.CausalLM", name_or_path: str = "", raw_config: Optional[Dict[str, Any]] = None):
        self._core = core
        self.name_or_path = name_or_path
        if name_or_path:
            core.name_or_path = name_or_path  # adapter configs record it (base_model_name_or_path)
        values = dict(core.config)
        values.update(raw_config or {})
        values.setdefault("_name_or_path", name_or_path)
        self.config = ModelConfig(values)

    # ---- forward -------------------------------------------------------------------------------------
    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> CausalLMOutput:
        """Logits (and the loss when `labels` are given, -100 = ignored, shifted inside as in
        transformers) for `input_ids` [batch, seq]. `attention_mask` [batch, seq]: 1 for tokens,
        0 for padding (left or right). ``return_dict`` and ``use_cache`` are accepted and ignored."""
        for ignored in ("return_dict", "use_cache"):
            kwargs.pop(ignored, None)
        if kwargs:
            raise TypeError(f"forward() got unexpected keyword arguments: {sorted(kwargs)}")
        if input_ids is None:
            raise _core.Error("forward() needs input_ids")
        ids = _as_long_tensor(input_ids, "input_ids")
        mask = _as_long_tensor(attention_mask, "attention_mask")
        lab = _as_long_tensor(labels, "labels")
        logits, loss, aux_loss = self._core.forward(ids, mask, lab)
        return CausalLMOutput(logits=logits, loss=loss, aux_loss=aux_loss)

    __call__ = forward

    # ---- generation ----------------------------------------------------------------------------------
    def generate(self, input_ids=None, attention_mask=None, *, max_new_tokens: Optional[int] = None,
                 max_length: Optional[int] = None, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0, seed: Optional[int] = None,
                 eos_token_id: Union[int, Sequence[int], None] = None, pad_token_id: Optional[int] = None,
                 repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
                 stop_strings: Union[str, Sequence[str], None] = None, tokenizer=None, tools=None,
                 num_return_sequences: int = 1, return_dict_in_generate: bool = False, **kwargs):
        """Generates continuations with a KV cache (greedy, or sampled with ``do_sample=True``).

        `max_new_tokens` (default 64; or transformers' `max_length`, prompt included) bounds the
        new tokens. `input_ids`: a [batch, seq] tensor (with `attention_mask` when padded; padding is removed
        and rows are batched left-padded internally, so each row gets exactly the tokens it would
        get alone), a list of id lists, or one list of ids. Returns what transformers returns for a
        tensor: [batch, prompt + new] ids, rows right-padded with `pad_token_id`; for lists, lists
        of ids (prompt + new). Generation of a row stops after an `eos_token_id` (default: the
        model config's), at one of `stop_strings` (needs ``tokenizer=``), or after
        `max_new_tokens`. Sampling: `temperature`, `top_k` (0 = off), `top_p`, seeded by `seed`
        (default: drawn from torch's global generator, so ``torch.manual_seed`` fixes it).
        `repetition_penalty` and `no_repeat_ngram_size` are transformers'. `tools` (a
        :class:`ranktune.tools.ToolUse`, needs ``tokenizer=``): when a row ends with a complete tool
        call, the tool runs and its response is inserted, then generation goes on (docs/tools.md).
        `num_return_sequences` samples per prompt share its prefill; row i * num_return_sequences + j
        is prompt i's j-th (each row is seeded on its own: seed for row 0, a mix of seed and the row
        for the others). With
        ``return_dict_in_generate=True`` a :class:`GenerateOutput` is returned.
        """
        if kwargs:
            raise TypeError(f"generate() got unexpected keyword arguments: {sorted(kwargs)}")
        if input_ids is None:
            raise _core.Error("generate() needs input_ids")

        as_tensor = isinstance(input_ids, torch.Tensor)
        single = False
        if as_tensor:
            ids = _as_long_tensor(input_ids, "input_ids")
            mask = _as_long_tensor(attention_mask, "attention_mask")
            rows = ids.tolist()
            if mask is not None:
                prompts = [[t for t, keep in zip(r, m) if keep] for r, m in zip(rows, mask.tolist())]
            else:
                prompts = rows
        else:
            seq = list(input_ids)
            single = len(seq) > 0 and not isinstance(seq[0], (list, tuple, torch.Tensor))
            prompts = [[int(t) for t in seq]] if single else [[int(t) for t in r] for r in seq]

        if max_new_tokens is None:
            longest = max((len(p) for p in prompts), default=0)
            max_new_tokens = max(max_length - longest, 0) if max_length is not None else 64
        if do_sample:
            if not temperature > 0:
                raise _core.Error(f"do_sample=True needs temperature > 0, got {temperature}")
            c_temperature = float(temperature)
        else:
            c_temperature = 0.0
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item()) if do_sample else 0
        if eos_token_id is None:
            eos = self.config.get("eos_token_id")
            eos_ids = [] if eos is None else ([int(eos)] if isinstance(eos, int) else [int(e) for e in eos])
        else:
            eos_ids = [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(e) for e in eos_token_id]
        if pad_token_id is None:
            pad_token_id = self.config.get("pad_token_id")
            if pad_token_id is None:
                pad_token_id = eos_ids[0] if eos_ids else 0
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        stops = list(stop_strings or [])
        core_tok = getattr(tokenizer, "_core", tokenizer) if tokenizer is not None else None

        results = self._core.generate(prompts, int(max_new_tokens), c_temperature, int(top_k), float(top_p), int(seed),
                                      float(repetition_penalty), int(no_repeat_ngram_size), eos_ids, int(pad_token_id),
                                      stops, core_tok, tools, int(num_return_sequences))
        new_tokens = [list(tokens) for tokens, _ in results]
        reasons = [reason for _, reason in results]
        group = int(num_return_sequences)
        if as_tensor:
            full = [r + n for r, n in zip([r for r in ids.tolist() for _ in range(group)], new_tokens)]
            width = max(len(f) for f in full)
            sequences = torch.tensor([f + [pad_token_id] * (width - len(f)) for f in full], dtype=torch.long)
        else:
            full = [p + n for p, n in zip([p for p in prompts for _ in range(group)], new_tokens)]
            sequences = full[0] if single and group == 1 else full
        if return_dict_in_generate:
            return GenerateOutput(sequences, new_tokens, reasons)
        return sequences

    # ---- parameters ------------------------------------------------------------------------------------
    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[Tuple[str, torch.Tensor]]:
        """(name, tensor) for every parameter, Hugging Face's names (adapters: ``...q_proj.lora_A.
        default.weight``). The tensors are the model's own: shared memory and autograd state."""
        for name, t in self._core.named_parameters():
            yield (prefix + ("." if prefix else "") + name, t)

    def parameters(self, recurse: bool = True) -> Iterator[torch.Tensor]:
        """Every parameter tensor (the model's own)."""
        for _, t in self._core.named_parameters():
            yield t

    def named_buffers(self) -> Iterator[Tuple[str, torch.Tensor]]:
        """(name, tensor) for every buffer."""
        yield from self._core.named_buffers()

    def state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """name -> tensor (shared, detached) for every parameter and buffer."""
        out = OrderedDict((n, t.detach()) for n, t in self._core.named_parameters())
        out.update((n, t.detach()) for n, t in self._core.named_buffers())
        return out

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Number of weights (only those with requires_grad when `only_trainable`): tied weights once,
        and a quantized base's projection weights (no parameters) counted as the weights they are."""
        counts = self._core.parameter_counts()
        return counts["trainable"] if only_trainable else counts["total"]

    def requires_grad_(self, requires_grad: bool = True) -> "CausalLM":
        """Sets requires_grad on every parameter."""
        for t in self.parameters():
            t.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears every parameter's gradient."""
        for t in self.parameters():
            if t.grad is not None:
                if set_to_none:
                    t.grad = None
                else:
                    t.grad.zero_()

    # ---- modes -----------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "CausalLM":
        """Training mode (adapter dropout active). Returns self."""
        self._core.set_training(bool(mode))
        return self

    def eval(self) -> "CausalLM":
        """Evaluation mode (no dropout). Returns self."""
        return self.train(False)

    @property
    def training(self) -> bool:
        """True in training mode."""
        return self._core.training

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype."""
        return getattr(torch, self._core.dtype)

    @property
    def device(self) -> torch.device:
        """Always the CPU."""
        return torch.device("cpu")

    def to(self, *args, **kwargs) -> "CausalLM":
        """Accepts only the CPU and the model's dtype (ranktune converts dtypes at load time)."""
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.dtype) and a != self.dtype:
                raise _core.Error(f"the model is {self.dtype}: load it with dtype={a} instead")
            if isinstance(a, (str, torch.device)) and torch.device(a).type != "cpu":
                raise _core.Error("ranktune runs on the CPU")
        return self

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        """Recompute each decoder layer's activations in backward (less memory, one more forward)."""
        self._core.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        """Store activations again."""
        self._core.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        """True when gradient checkpointing is on."""
        return self._core.gradient_checkpointing

    # ---- files -----------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: Union[str, os.PathLike], dtype: Optional[torch.dtype] = None) -> None:
        """Writes config.json and model.safetensors (base weights under Hugging Face's names;
        adapters are not included: merge them first, or save the PeftModel)."""
        save_directory = os.fspath(save_directory)
        os.makedirs(save_directory, exist_ok=True)
        config = {k: v for k, v in self.config.to_dict().items() if not k.startswith("_")}
        with open(os.path.join(save_directory, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True, default=list)
            f.write("\n")
        self._core.save_weights(os.path.join(save_directory, "model.safetensors"),
                                None if dtype is None else _dtype_name(dtype))

    def load_weights(self, checkpoint: Union[str, os.PathLike], strict: bool = True) -> Dict[str, List[str]]:
        """Loads base weights from a safetensors file or directory; returns the missing, unexpected
        and mis-shaped keys (with `strict`, any of them is an error)."""
        return self._core.load_weights(os.fspath(checkpoint), strict)

    def __repr__(self) -> str:
        return repr(self._core)


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _has_weights(path: str) -> bool:
    path = _core.resolve_pretrained(path)
    if os.path.isfile(path):
        return path.endswith(".safetensors")
    return os.path.exists(os.path.join(path, "model.safetensors")) or os.path.exists(
        os.path.join(path, "model.safetensors.index.json"))


class AutoModelForCausalLM:
    """transformers' ``AutoModelForCausalLM``: loads the architecture config.json names
    (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel, MixtralForCausalLM,
    Qwen2MoeForCausalLM, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM)."""

    def __init__(self):
        raise TypeError("use AutoModelForCausalLM.from_pretrained(path) or .from_config(config)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], dtype=None, *,
                        torch_dtype=None, init_seed: Optional[int] = None, quantize: Optional[str] = None,
                        double_quant: bool = False, **kwargs) -> CausalLM:
        """Loads config.json and the safetensors weights (sharded or not) of a model directory.

        `dtype` (or transformers' `torch_dtype`): torch.float32 (default), torch.bfloat16, ...;
        weights stored in that dtype are memory-mapped, others converted. The model is returned
        in evaluation mode, as transformers returns it (``model.train()`` for dropout). A directory with a
        config.json but no weights (like examples/gsm8k/quickstart/model) is an error unless
        `init_seed` is given: then the model is initialised randomly from that seed, as the CLI's
        ``model.init_seed`` does (see also :meth:`from_config`). transformers' ``low_cpu_mem_usage``
        and ``device_map="cpu"`` are accepted and ignored; other keywords are a TypeError.

        `quantize`: ``"int8"`` or ``"nf4"`` stores every frozen projection weight quantized (QLoRA;
        the recipe's ``model.quantize``), ``double_quant=True`` also quantizes nf4's block scales;
        embeddings, norms and the output head stay in `dtype` (docs/quantization.md).
        """
        kwargs.pop("low_cpu_mem_usage", None)
        if kwargs.get("device_map") in ("cpu", None):
            kwargs.pop("device_map", None)
        if kwargs:
            raise TypeError(f"from_pretrained() got unexpected keyword arguments: {sorted(kwargs)}")
        if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
            raise _core.Error("pass dtype or torch_dtype, not both")
        dtype_name = _dtype_name(dtype if dtype is not None else torch_dtype)
        path = os.fspath(pretrained_model_name_or_path)
        local = _core.resolve_pretrained(path)  # org/name[@revision]: its snapshot in the Hugging Face cache
        if not os.path.exists(local):
            raise FileNotFoundError(f"{path}: no such model directory (ranktune loads local Hugging Face "
                                    "directories: config.json + model.safetensors)")
        if not _has_weights(local):
            config_file = local if os.path.isfile(local) else os.path.join(local, "config.json")
            if os.path.isfile(config_file) and init_seed is not None:
                return cls.from_config(config_file, dtype=dtype_name, seed=init_seed, name_or_path=path,
                                       quantize=quantize, double_quant=double_quant)
            if os.path.isfile(config_file):
                raise FileNotFoundError(
                    f"{path} has a config.json but no weights (model.safetensors): pass init_seed=N to "
                    f"initialise it randomly, as the CLI's model.init_seed does, or use "
                    f"AutoModelForCausalLM.from_config({path!r}, seed=N)")
        core = _core.CausalLM.load(path, dtype_name, quantize or "none", bool(double_quant))
        raw = _read_json(os.path.join(local, "config.json")) if os.path.isdir(local) else None
        return CausalLM(core, name_or_path=path, raw_config=raw).eval()  # as transformers returns it

    @classmethod
    def from_config(cls, config: Union[str, os.PathLike, Dict[str, Any], ModelConfig], dtype=None, *, seed: int = 0,
                    name_or_path: Optional[str] = None, torch_dtype=None, quantize: Optional[str] = None,
                    double_quant: bool = False) -> CausalLM:
        """A model with random weights (transformers' initialisation: N(0, 0.02), ones for norms),
        seeded by `seed`. `config`: a model directory, a config.json path, a dict or a
        :class:`ModelConfig`. `quantize`, `double_quant`: as for :meth:`from_pretrained`."""
        dtype_name = _dtype_name(dtype if dtype is not None else torch_dtype)
        if isinstance(config, ModelConfig):
            raw, source = config.to_dict(), "<ModelConfig>"
        elif isinstance(config, dict):
            raw, source = dict(config), "<dict>"
        else:
            given = os.fspath(config)
            source = os.path.join(given, "config.json") if os.path.isdir(given) else given
            with open(source) as f:
                raw = json.load(f)
            if name_or_path is None:
                name_or_path = given if os.path.isdir(given) else os.path.dirname(given)
        raw = {k: v for k, v in raw.items() if not k.startswith("_")}
        core = _core.CausalLM.create(json.dumps(raw), source, dtype_name, int(seed), quantize or "none",
                                     bool(double_quant))
        return CausalLM(core, name_or_path=name_or_path or "", raw_config=raw).eval()
