"""LoRA and DoRA adapters with Hugging Face PEFT's API, names, defaults and file format
(``adapter_config.json`` + ``adapter_model.safetensors``, loadable by PEFT and back).

    config = ranktune.LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], use_dora=True)
    model = ranktune.get_peft_model(base, config)
    model.print_trainable_parameters()
    ...train...
    model.save_pretrained("runs/adapter")
    model = ranktune.PeftModel.from_pretrained(fresh_base, "runs/adapter")
    merged = model.merge_and_unload()

The adapters live in the base model's layers (ranktune's adaptable Linear, C++), so attaching
one changes the model in place, as PEFT does.
"""

import contextlib
import dataclasses
import json
import os
import textwrap
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from . import _core
from .modeling import CausalLM, CausalLMOutput

__all__ = ["LoraConfig", "PeftModel", "get_peft_model"]


# LoraConfig's schema is the C++ field table (src/peft/lora_config_fields.cpp): each field's default,
# help and JSON form come from it, so the dataclass, adapter_config.json and recipes cannot drift.
_FIELDS: Dict[str, Dict[str, Any]] = {f["name"]: f for f in _core.lora_config_fields()}


def _field(name: str):
    """The dataclass field `name` with the table's default and help."""
    spec = _FIELDS[name]
    default = json.loads(spec["default_json"])
    metadata = {"help": spec["help"]}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: json.loads(spec["default_json"]), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class LoraConfig:
    r: int = _field("r")
    target_modules: Optional[Union[List[str], str]] = _field("target_modules")
    exclude_modules: Optional[Union[List[str], str]] = _field("exclude_modules")
    lora_alpha: float = _field("lora_alpha")
    lora_dropout: float = _field("lora_dropout")
    fan_in_fan_out: bool = _field("fan_in_fan_out")
    bias: str = _field("bias")
    use_rslora: bool = _field("use_rslora")
    modules_to_save: Optional[List[str]] = _field("modules_to_save")
    init_lora_weights: Union[bool, str] = _field("init_lora_weights")
    layers_to_transform: Optional[Union[List[int], int]] = _field("layers_to_transform")
    layers_pattern: Optional[Union[List[str], str]] = _field("layers_pattern")
    rank_pattern: Dict[str, int] = _field("rank_pattern")
    alpha_pattern: Dict[str, float] = _field("alpha_pattern")
    use_dora: bool = _field("use_dora")
    ensure_weight_tying: bool = _field("ensure_weight_tying")
    task_type: Optional[str] = _field("task_type")
    inference_mode: bool = _field("inference_mode")
    base_model_name_or_path: Optional[str] = _field("base_model_name_or_path")
    revision: Optional[str] = _field("revision")

    peft_type: ClassVar[str] = "LORA"

    def __post_init__(self):
        if isinstance(self.target_modules, (set, frozenset, tuple)):
            self.target_modules = sorted(self.target_modules) if isinstance(self.target_modules, (set, frozenset)) \
                else list(self.target_modules)
        if isinstance(self.exclude_modules, (set, frozenset, tuple)):
            self.exclude_modules = sorted(self.exclude_modules) if isinstance(self.exclude_modules, (set, frozenset)) \
                else list(self.exclude_modules)
        if isinstance(self.modules_to_save, (set, frozenset, tuple)):
            self.modules_to_save = list(self.modules_to_save)
        if isinstance(self.layers_to_transform, tuple):
            self.layers_to_transform = list(self.layers_to_transform)
        task = getattr(self.task_type, "value", self.task_type)  # PEFT's TaskType enum
        self.task_type = None if task is None else str(task)
        # Every value is checked by the C++ config (the same messages as adapter_config.json).
        self.to_json_string()

    # ---- JSON (written by the C++ codec, as `ranktune train` writes it) --------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """The fields as PEFT writes them (``peft_type`` included; fields of later PEFT versions, such
        as ``exclude_modules``, only when set)."""
        return json.loads(self.to_json_string())

    def to_json_string(self) -> str:
        """adapter_config.json text (keys sorted, two-space indent, as PEFT writes it)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _core.lora_config_normalize(json.dumps(values))

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "LoraConfig":
        """A config from adapter_config.json's fields; fields ranktune does not know (PEFT's
        megatron_config, loftq_config, ...) are ignored, those that change the math are refused."""
        text = _core.lora_config_normalize(json.dumps(values))  # validates, warns on unknown fields
        return cls._from_normalized_json(text)

    @classmethod
    def _from_normalized_json(cls, text: str) -> "LoraConfig":
        values = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_json_string(cls, text: str) -> "LoraConfig":
        """A config from adapter_config.json text."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_pretrained(cls, path: Union[str, os.PathLike]) -> "LoraConfig":
        """Reads `path`/adapter_config.json (or the file `path`)."""
        return cls._from_normalized_json(_core.lora_config_load(os.fspath(path)))

    def save_pretrained(self, save_directory: Union[str, os.PathLike]) -> None:
        """Writes `save_directory`/adapter_config.json."""
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, "adapter_config.json"), "w") as f:
            f.write(self.to_json_string() + "\n")


def _docstring() -> str:
    lines = ["PEFT's ``LoraConfig``: the same fields, defaults and JSON form (``adapter_config.json``).", "",
             "Fields (default): what each means, from ranktune's field table (docs/config.md lists them too)."]
    for name, spec in _FIELDS.items():
        entry = f"{name} ({json.loads(spec['default_json'])!r}): {spec['help']}"
        lines += textwrap.wrap(entry, width=100, initial_indent="  ", subsequent_indent="    ",
                               break_on_hyphens=False)
    lines += ["", "Unknown keyword arguments are a TypeError; invalid values raise :class:`ranktune.Error` (a",
              "ValueError) naming the field, the value and what is allowed."]
    return "\n".join(lines)


LoraConfig.__doc__ = _docstring()


# ---- PeftModel ---------------------------------------------------------------------------------------


def _layout_for(model: CausalLM, config: LoraConfig) -> LoraConfig:
    """GPT-2 stores its projections [in, out] (Conv1D): as PEFT, set fan_in_fan_out for it."""
    if model.config.get("model_type") == "gpt2" and not config.fan_in_fan_out:
        warnings.warn("fan_in_fan_out is False but GPT-2's layers are Conv1D: setting fan_in_fan_out to True (as PEFT)")
        return dataclasses.replace(config, fan_in_fan_out=True)
    return config


def _as_list(names: Union[str, Sequence[str]]) -> List[str]:
    return [names] if isinstance(names, str) else list(names)


class PeftModel:
    """PEFT's ``PeftModel`` for a ranktune :class:`~ranktune.CausalLM`: the base model with named
    adapters. Calling it, ``generate``, ``named_parameters``, ``train``/``eval`` and ``config``
    go to the base model (whose layers hold the adapters); unknown attributes are looked up there.

    Create it with :func:`get_peft_model` or :meth:`PeftModel.from_pretrained`.
    """

    def __init__(self, model: CausalLM, peft_config: LoraConfig, adapter_name: str = "default"):
        if isinstance(model, PeftModel):
            raise TypeError("the model already has adapters: use add_adapter()")
        if not isinstance(model, CausalLM):
            raise TypeError(f"expected a ranktune CausalLM, got {type(model).__name__} "
                            "(for a torch.nn.Module use ranktune.torch.inject)")
        if not isinstance(peft_config, LoraConfig):
            raise TypeError(f"expected a ranktune.LoraConfig, got {type(peft_config).__name__}")
        peft_config = _layout_for(model, peft_config)
        self.__dict__["base_model"] = model
        self.__dict__["_core"] = _core.PeftModel(model._core, peft_config.to_json_string(), adapter_name)

    @classmethod
    def _wrap(cls, model: CausalLM, core: "_core.PeftModel") -> "PeftModel":
        self = cls.__new__(cls)
        self.__dict__["base_model"] = model
        self.__dict__["_core"] = core
        return self

    @classmethod
    def from_pretrained(cls, model: CausalLM, model_id: Union[str, os.PathLike], adapter_name: str = "default",
                        is_trainable: bool = False, **kwargs) -> "PeftModel":
        """Attaches an adapter saved by PEFT or ranktune (`model_id`: its directory). Every key and
        shape is checked first; an adapter that does not fit raises one short error (the first few
        keys, their counts, whether the base model looks wrong) and the model is left unchanged.
        The adapter is frozen (and the model put in eval mode) unless `is_trainable`."""
        if kwargs:
            raise TypeError(f"from_pretrained() got unexpected keyword arguments: {sorted(kwargs)}")
        if isinstance(model, PeftModel):
            raise TypeError("the model already has adapters: use load_adapter()")
        core = _core.PeftModel.from_pretrained(model._core, os.fspath(model_id), adapter_name, bool(is_trainable))
        if not is_trainable:
            model.eval()  # as PEFT does for inference
        return cls._wrap(model, core)

    # ---- delegation to the base model -------------------------------------------------------------------
    def __getattr__(self, name: str):
        base = self.__dict__.get("base_model")
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)

    def __call__(self, *args, **kwargs) -> CausalLMOutput:
        """The base model's forward (with the active adapters)."""
        return self.base_model(*args, **kwargs)

    def forward(self, *args, **kwargs) -> CausalLMOutput:
        """The base model's forward (with the active adapters)."""
        return self.base_model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        """The base model's generate (with the active adapters)."""
        return self.base_model.generate(*args, **kwargs)

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[Tuple[str, torch.Tensor]]:
        """The base model's parameters, adapters included (``...lora_A.<adapter>.weight``)."""
        return self.base_model.named_parameters(prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[torch.Tensor]:
        """The base model's parameter tensors, adapters included."""
        return self.base_model.parameters(recurse)

    def train(self, mode: bool = True) -> "PeftModel":
        """Training mode (adapter dropout active). Returns self."""
        self.base_model.train(mode)
        return self

    def eval(self) -> "PeftModel":
        """Evaluation mode. Returns self."""
        self.base_model.eval()
        return self

    def get_base_model(self) -> CausalLM:
        """The model the adapters are attached to."""
        return self.base_model

    # ---- adapters ---------------------------------------------------------------------------------------
    @property
    def peft_config(self) -> Dict[str, LoraConfig]:
        """adapter name -> its LoraConfig."""
        return {n: LoraConfig._from_normalized_json(self._core.config_json(n)) for n in self._core.adapter_names}

    @property
    def active_adapters(self) -> List[str]:
        """The active adapters' names."""
        return list(self._core.active_adapters)

    @property
    def active_adapter(self) -> str:
        """The (first) active adapter's name."""
        active = self._core.active_adapters
        return active[0] if active else ""

    def add_adapter(self, adapter_name: str, peft_config: LoraConfig) -> None:
        """Attaches another adapter. As in PEFT it is not activated: call :meth:`set_adapter`."""
        self._core.add_adapter(adapter_name, _layout_for(self.base_model, peft_config).to_json_string())

    def load_adapter(self, model_id: Union[str, os.PathLike], adapter_name: str, is_trainable: bool = False) -> None:
        """Attaches another saved adapter (not activated)."""
        self._core.load_adapter(os.fspath(model_id), adapter_name, bool(is_trainable))

    def set_adapter(self, adapter_name: Union[str, Sequence[str]]) -> None:
        """Makes this adapter (or these) active and trainable; the others stay attached, unused."""
        self._core.set_adapter(_as_list(adapter_name))

    def delete_adapter(self, adapter_name: str) -> None:
        """Removes an adapter (deleting the active one activates the first left, as PEFT)."""
        self._core.delete_adapter(adapter_name)

    def save_pretrained(self, save_directory: Union[str, os.PathLike],
                        selected_adapters: Optional[Sequence[str]] = None) -> None:
        """Writes each adapter (default: all) in PEFT's layout: "default" in `save_directory`,
        others in `save_directory`/<name>/ (adapter_config.json + adapter_model.safetensors)."""
        self._core.save_pretrained(os.fspath(save_directory), list(selected_adapters or []))

    @contextlib.contextmanager
    def disable_adapter(self):
        """Context manager: inside it the model runs without adapters (PEFT's
        ``with model.disable_adapter():``)."""
        was_enabled = self._core.adapters_enabled
        self._core.disable_adapters()
        try:
            yield
        finally:
            if was_enabled:
                self._core.enable_adapters()

    def enable_adapter_layers(self) -> None:
        """Turns adapters back on after :meth:`disable_adapter_layers`."""
        self._core.enable_adapters()

    def disable_adapter_layers(self) -> None:
        """Turns every adapter off (the base model's output)."""
        self._core.disable_adapters()

    def merge_adapter(self, adapter_names: Optional[Sequence[str]] = None, safe_merge: bool = False) -> None:
        """Folds adapters (default: the active ones) into the base weights (reversible with
        :meth:`unmerge_adapter`). `safe_merge` checks the result for NaN/Inf first."""
        self._core.merge_adapter(bool(safe_merge), list(adapter_names or []))

    def unmerge_adapter(self) -> None:
        """Reverses :meth:`merge_adapter` exactly."""
        self._core.unmerge_adapter()

    def merge_and_unload(self, progressbar: bool = False, safe_merge: bool = False,
                         adapter_names: Optional[Sequence[str]] = None) -> CausalLM:
        """Merges the active adapters (or `adapter_names`) into the base weights, removes every
        adapter and returns the base model."""
        if adapter_names is not None:
            self.set_adapter(list(adapter_names))
        self._core.merge_and_unload(bool(safe_merge))
        return self.base_model

    def unload(self) -> CausalLM:
        """Removes every adapter without merging and returns the base model (as PEFT, the active
        adapter's modules_to_save copies become the modules' parameters)."""
        self._core.unload()
        return self.base_model

    def add_weighted_adapter(self, adapters: Sequence[str], weights: Sequence[float], adapter_name: str,
                             combination_type: str = "svd", svd_rank: Optional[int] = None,
                             svd_clamp: Optional[float] = None, **kwargs) -> None:
        """Adds `adapter_name` combined from `adapters` with `weights`, as PEFT defines
        ("linear", "cat" or "svd"; DoRA sources are refused). Not activated."""
        if kwargs:
            raise TypeError(f"add_weighted_adapter() got unexpected keyword arguments: {sorted(kwargs)}")
        self._core.add_weighted_adapter(list(adapters), [float(w) for w in weights], adapter_name, combination_type,
                                        svd_rank, svd_clamp)

    def get_nb_trainable_parameters(self) -> Tuple[int, int]:
        """(trainable parameters, all parameters)."""
        counts = self._core.trainable_parameters()
        return counts["trainable"], counts["total"]

    def print_trainable_parameters(self) -> None:
        """Prints PEFT's line: ``trainable params: 512 || all params: 5,408 || trainable%: 9.4675``."""
        print(self._core.trainable_parameters()["summary"])

    def __repr__(self) -> str:
        return f"PeftModel(active_adapters={self.active_adapters}, base_model=\n{self.base_model!r})"


def get_peft_model(model: CausalLM, peft_config: LoraConfig, adapter_name: str = "default") -> PeftModel:
    """Attaches `peft_config` as `adapter_name` to `model` (in place) and returns the
    :class:`PeftModel`; only the adapter (and what the config names) trains."""
    return PeftModel(model, peft_config, adapter_name)
