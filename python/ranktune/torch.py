"""LoRA/DoRA for ordinary ``torch.nn.Module``s, with the math in ranktune's C++ kernels.

    net = MyNet()
    ranktune.torch.inject(net, ranktune.LoraConfig(r=8, target_modules=["fc1", "fc2"], use_dora=True))
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    ...
    ranktune.torch.save_adapter(net, "runs/my-adapter")        # PEFT's files and keys

:func:`inject` replaces each ``nn.Linear`` the config selects (PEFT's target matching, the same
C++ matcher ranktune's models use) by a :class:`LoraLinear` holding the original layer as
``base_layer`` (frozen) and the adapters as PEFT names them (``lora_A.<name>.weight``,
``lora_B.<name>.weight``, ``lora_magnitude_vector.<name>.weight``):

    LoRA:  y = W x + b + s · B A drop(x)
    DoRA:  y = m ⊙ (W x + s · B A x) / sg(‖W + s·B A‖_row) + b       (no dropout)

with s = lora_alpha / r (or / sqrt(r) for rsLoRA). The update runs in ``lora_update`` /
``dora_update`` (hand-written backward passes that keep no out-sized temporaries) and DoRA's
row norm comes from the low-rank factors without an out×in matrix (``dora_weight_norm``).
Initialised as PEFT does: A kaiming-uniform (a = √5), B zeros, m = ‖W‖ per row.
"""

import json
import math
import os
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from . import _core
from .peft import LoraConfig

__all__ = ["DoraMagnitude", "LoraLinear", "adapter_parameters", "inject", "load_adapter", "save_adapter",
           "set_adapter"]

_CONFIGS_ATTR = "peft_config"


class DoraMagnitude(nn.Module):
    """DoRA's learned magnitude m, one value per output row (``.weight``, as PEFT's DoraLinearLayer)."""

    def __init__(self, out_features: int, dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(out_features, dtype=dtype))


class LoraLinear(nn.Module):
    """An ``nn.Linear`` (``base_layer``, frozen) with named LoRA/DoRA adapters whose update runs
    in ranktune's C++ kernels. Several active adapters add their updates, each relative to the
    base, in insertion order (PEFT's order)."""

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"LoraLinear wraps nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_magnitude_vector = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.r: Dict[str, int] = {}
        self.lora_alpha: Dict[str, float] = {}
        self.scaling: Dict[str, float] = {}
        self.use_dora: Dict[str, bool] = {}
        self.active_adapters: List[str] = []
        self.disable_adapters = False
        self._row_sq_norm: Optional[torch.Tensor] = None
        self._row_sq_key: Tuple[int, int] = (0, -1)

    in_features = property(lambda self: self.base_layer.in_features, doc="The base layer's input size.")
    out_features = property(lambda self: self.base_layer.out_features, doc="The base layer's output size.")
    weight = property(lambda self: self.base_layer.weight, doc="The base weight [out, in] (frozen).")
    bias = property(lambda self: self.base_layer.bias, doc="The base bias [out] or None (frozen).")

    def update_layer(self, adapter_name: str, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                     init_lora_weights: Union[bool, str] = True, use_rslora: bool = False,
                     use_dora: bool = False) -> None:
        """Adds adapter `adapter_name` (active), initialised as PEFT does."""
        if adapter_name in self.lora_A:
            raise ValueError(f"adapter '{adapter_name}' already exists on this layer")
        if r <= 0:
            raise ValueError(f"r must be a positive integer, got {r}")
        init = init_lora_weights
        if isinstance(init, str) and init.lower() in ("true", "false"):
            init = init.lower() == "true"
        if init not in (True, False, "gaussian"):
            raise NotImplementedError(f"init_lora_weights={init!r} is not available in ranktune.torch (PiSSA and "
                                      "OLoRA rewrite the base weight; use them with ranktune's own models)")
        weight = self.base_layer.weight
        # PEFT's order of random draws: both layers get nn.Linear's init, then A is re-drawn.
        lora_A = nn.Linear(self.in_features, r, bias=False)
        lora_B = nn.Linear(r, self.out_features, bias=False)
        if init is True:
            nn.init.kaiming_uniform_(lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(lora_B.weight)
        elif init == "gaussian":
            nn.init.normal_(lora_A.weight, std=1 / r)
            nn.init.zeros_(lora_B.weight)
        # Adapters take the base's dtype, except that a half-precision base gets fp32 adapters
        # (PEFT's autocast_adapter_dtype=True).
        dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
        lora_A.to(device=weight.device, dtype=dtype)
        lora_B.to(device=weight.device, dtype=dtype)
        self.lora_A[adapter_name] = lora_A
        self.lora_B[adapter_name] = lora_B
        self.lora_dropout[adapter_name] = nn.Dropout(p=lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.r[adapter_name] = int(r)
        self.lora_alpha[adapter_name] = float(lora_alpha)
        self.scaling[adapter_name] = float(lora_alpha) / (math.sqrt(r) if use_rslora else r)
        self.use_dora[adapter_name] = bool(use_dora)
        if use_dora:
            magnitude = DoraMagnitude(self.out_features, dtype).to(weight.device)
            with torch.no_grad():
                magnitude.weight.copy_(self._weight_norm(adapter_name, lora_A.weight, lora_B.weight))
            self.lora_magnitude_vector[adapter_name] = magnitude
        self.active_adapters.append(adapter_name)

    def delete_adapter(self, adapter_name: str) -> None:
        """Removes an adapter."""
        for container in (self.lora_A, self.lora_B, self.lora_magnitude_vector, self.lora_dropout):
            if adapter_name in container:
                del container[adapter_name]
        for d in (self.r, self.lora_alpha, self.scaling, self.use_dora):
            d.pop(adapter_name, None)
        self.active_adapters = [a for a in self.active_adapters if a != adapter_name]

    # ---- math --------------------------------------------------------------------------------------
    def _weight_row_sq_norm(self) -> torch.Tensor:
        """Σ_j W_ij² per row, cached until the weight's storage or version changes."""
        w = self.base_layer.weight
        key = (w.data_ptr(), w._version)
        if self._row_sq_norm is None or key != self._row_sq_key:
            with torch.no_grad():
                self._row_sq_norm = w.detach().pow(2).sum(dim=1)
            self._row_sq_key = key
        return self._row_sq_norm

    def _weight_norm(self, adapter_name: str, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return _core.dora_weight_norm(self.base_layer.weight.detach(), self._weight_row_sq_norm(), A, B,
                                      self.scaling[adapter_name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base output plus every active adapter's update (only the base when disabled)."""
        if self.disable_adapters or not self.active_adapters:
            return self.base_layer(x)
        weight, bias = self.base_layer.weight, self.base_layer.bias
        result: Optional[torch.Tensor] = None
        base_product: Optional[torch.Tensor] = None  # W x, shared by DoRA adapters that see x itself
        for name in self.active_adapters:
            if name not in self.lora_A:
                continue
            A, B, s = self.lora_A[name].weight, self.lora_B[name].weight, self.scaling[name]
            xa = x if x.dtype == A.dtype else x.to(A.dtype)
            dropout = self.lora_dropout[name]
            if self.training and isinstance(dropout, nn.Dropout):
                xa = dropout(xa)
            if not self.use_dora[name]:
                if result is None:
                    result = self.base_layer(x)
                result = _core.lora_update(result, xa, A, B, s)
                continue
            # DoRA (Liu et al. 2024): the norm is a constant in backward (§4.3).
            magnitude = self.lora_magnitude_vector[name].weight
            norm = self._weight_norm(name, A, B)
            shares_input = xa is x
            if shares_input:
                if base_product is None:
                    base_product = F.linear(x, weight)
                base = base_product
            else:  # dropout or a dtype cast: PEFT recomputes the base product on the adapter input
                base = F.linear(xa, weight if weight.dtype == xa.dtype else weight.to(xa.dtype))
            if result is None and shares_input:
                rest = None if bias is None else bias.to(xa.dtype)
            else:
                if result is not None:
                    so_far = result
                elif base_product is not None:
                    so_far = base_product if bias is None else base_product + bias
                else:
                    so_far = self.base_layer(x)
                rest = so_far.to(xa.dtype) - base
            y = _core.dora_update(rest, base, xa, A, B, magnitude, norm, s)
            reference = result if result is not None else x
            result = y if y.dtype == reference.dtype else y.to(reference.dtype)
        return result if result is not None else self.base_layer(x)

    def extra_repr(self) -> str:
        """Shapes and adapters, for print(module)."""
        adapters = ", ".join(f"{n}: r={self.r[n]}{' dora' if self.use_dora[n] else ''}" for n in self.r)
        return f"in_features={self.in_features}, out_features={self.out_features}, adapters=[{adapters}]"


# ---- injection ---------------------------------------------------------------------------------------


def _adaptable_layers(module: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(qualified name, layer) for every nn.Linear and LoraLinear, not descending into LoraLinears."""
    out = []

    def walk(prefix: str, m: nn.Module) -> None:
        for child_name, child in m.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, LoraLinear):
                out.append((name, child))
            elif isinstance(child, nn.Linear):
                out.append((name, child))
            else:
                walk(name, child)

    walk("", module)
    return out


def _default_output_head(module: nn.Module) -> str:
    get = getattr(module, "get_output_embeddings", None)
    if callable(get):
        head = get()
        for name, m in module.named_modules():
            if m is head and head is not None:
                return name.rsplit(".", 1)[-1]
    return "lm_head"


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _configs(module: nn.Module) -> Dict[str, LoraConfig]:
    configs = getattr(module, _CONFIGS_ATTR, None)
    if configs is None:
        configs = {}
        setattr(module, _CONFIGS_ATTR, configs)
    return configs


def _mark_trainable(module: nn.Module, config: LoraConfig, output_head: str) -> None:
    """PEFT's _mark_only_adapters_as_trainable: everything frozen but the active adapters, the
    biases `bias` names, and modules_to_save."""
    for p in module.parameters():
        p.requires_grad_(False)
    if config.inference_mode:
        return
    for name, layer in module.named_modules():
        if not isinstance(layer, LoraLinear):
            continue
        for adapter in layer.lora_A:
            train = adapter in layer.active_adapters
            for container in (layer.lora_A, layer.lora_B, layer.lora_magnitude_vector):
                if adapter in container:
                    for p in container[adapter].parameters():
                        p.requires_grad_(train)
            if train and config.bias == "lora_only" and layer.base_layer.bias is not None:
                layer.base_layer.bias.requires_grad_(True)
    if config.bias == "all":
        for name, p in module.named_parameters():
            if name == "bias" or name.endswith(".bias"):
                p.requires_grad_(True)
    if config.modules_to_save:
        matcher = _core.TargetMatcher(config.to_json_string(), [], output_head)
        for name, m in module.named_modules():
            if name and matcher.is_module_to_save(_peft_name(name)):
                for p in m.parameters():
                    p.requires_grad_(True)


def _peft_name(name: str) -> str:
    """A parameter or module name as PEFT's checkpoint keys spell it (without ``base_layer.``)."""
    return name.replace(".base_layer.", ".").replace(".base_layer", "")


def inject(module: nn.Module, config: LoraConfig, adapter_name: str = "default",
           output_head: Optional[str] = None) -> nn.Module:
    """Adds adapter `adapter_name` to every ``nn.Linear`` of `module` that `config` selects,
    replacing it in place by a :class:`LoraLinear` (an existing LoraLinear gets another adapter),
    then sets what trains as PEFT does: everything is frozen except the active adapters, the
    biases ``config.bias`` names and ``modules_to_save``. The new adapter is active (adapters
    already attached keep their state). `output_head` is what "all-linear" leaves out (default:
    the module of ``get_output_embeddings()``, else "lm_head"). Returns `module`.

    Raises ValueError (listing the module's linear layers) when nothing matches.
    """
    if not isinstance(config, LoraConfig):
        raise TypeError(f"expected a ranktune.LoraConfig, got {type(config).__name__}")
    configs = _configs(module)
    if adapter_name in configs:
        raise ValueError(f"adapter '{adapter_name}' already exists")
    if config.target_modules is None:
        raise ValueError("target_modules is not set: name the modules to adapt (e.g. ['fc1'] or 'all-linear')")
    head = output_head if output_head is not None else _default_output_head(module)
    layers = _adaptable_layers(module)
    names = [n for n, _ in layers]
    matcher = _core.TargetMatcher(config.to_json_string(), names, head)
    targets = [(n, layer) for n, layer in layers if matcher.is_target(n)]
    if not targets:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ValueError(f"target_modules {config.target_modules!r} match no linear layer of this module; "
                         f"its linear layers: [{shown}]")
    if config.fan_in_fan_out:
        warnings.warn("fan_in_fan_out is set but the target modules are nn.Linear: setting it to False (as PEFT)")
    for name, layer in targets:
        options = matcher.adapter_options_for(name)
        if not isinstance(layer, LoraLinear):
            layer = LoraLinear(layer)
            _set_submodule(module, name, layer)
        layer.update_layer(adapter_name, options["r"], options["lora_alpha"], options["lora_dropout"],
                           config.init_lora_weights, options["use_rslora"], options["use_dora"])
    configs[adapter_name] = config
    _mark_trainable(module, config, head)
    return module


def set_adapter(module: nn.Module, adapter_names: Union[str, Sequence[str]]) -> None:
    """Makes exactly these adapters active (and trainable) in every LoraLinear of `module`."""
    names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
    configs = _configs(module)
    for n in names:
        if n not in configs:
            raise ValueError(f"no adapter '{n}'; adapters: {sorted(configs)}")
    for _, layer in module.named_modules():
        if isinstance(layer, LoraLinear):
            layer.active_adapters = [n for n in layer.lora_A if n in names]
    _mark_trainable(module, configs[names[0]], _default_output_head(module))


def adapter_parameters(module: nn.Module, adapter_name: Optional[str] = None) -> Iterator[Tuple[str, nn.Parameter]]:
    """(name, parameter) of the adapters' own weights (A, B, magnitudes), of one adapter or all."""
    for name, p in module.named_parameters():
        parts = name.split(".")
        for kind in ("lora_A", "lora_B", "lora_magnitude_vector"):
            if kind in parts:
                i = parts.index(kind)
                if adapter_name is None or (i + 1 < len(parts) and parts[i + 1] == adapter_name):
                    yield name, p
                break


# ---- files -------------------------------------------------------------------------------------------


def save_adapter(module: nn.Module, save_directory: Union[str, os.PathLike], adapter_name: str = "default") -> None:
    """Writes `save_directory`/adapter_config.json (inference_mode true, as PEFT writes it) and
    adapter_model.safetensors with PEFT's keys: ``base_model.model.<module>.lora_A.weight``,
    ``.lora_B.weight``, ``.lora_magnitude_vector`` (DoRA), and any trained biases /
    modules_to_save parameters under ``base_model.model.<parameter>``."""
    configs = _configs(module)
    if adapter_name not in configs:
        raise ValueError(f"no adapter '{adapter_name}'; adapters: {sorted(configs)}")
    config = configs[adapter_name]
    tensors = []
    adapted = []
    for name, layer in module.named_modules():
        if not isinstance(layer, LoraLinear) or adapter_name not in layer.lora_A:
            continue
        adapted.append(name)
        tensors.append((_core.peft_adapter_key(name, "lora_A"), layer.lora_A[adapter_name].weight.detach()))
        tensors.append((_core.peft_adapter_key(name, "lora_B"), layer.lora_B[adapter_name].weight.detach()))
        if adapter_name in layer.lora_magnitude_vector:
            tensors.append((_core.peft_adapter_key(name, "lora_magnitude_vector"),
                            layer.lora_magnitude_vector[adapter_name].weight.detach()))
    for name, t in _extra_parameters(module, config, adapted):
        tensors.append((_core.peft_parameter_key(name), t.detach()))
    save_directory = os.fspath(save_directory)
    os.makedirs(save_directory, exist_ok=True)
    written = json.loads(config.to_json_string())
    written["inference_mode"] = True
    _core.save_safetensors(os.path.join(save_directory, "adapter_model.safetensors"), tensors, {"format": "pt"})
    LoraConfig.from_dict(written).save_pretrained(save_directory)


def _extra_parameters(module: nn.Module, config: LoraConfig, adapted: List[str]) -> List[Tuple[str, torch.Tensor]]:
    """Full parameters saved with an adapter: modules_to_save, and biases per config.bias."""
    out, seen = [], set()
    head = _default_output_head(module)

    def add(name: str, t: torch.Tensor) -> None:
        key = _peft_name(name)
        if "lora_" not in key and key not in seen:
            seen.add(key)
            out.append((key, t))

    if config.modules_to_save:
        matcher = _core.TargetMatcher(config.to_json_string(), [], head)
        for name, m in module.named_modules():
            if name and matcher.is_module_to_save(_peft_name(name)):
                for pname, p in m.named_parameters():
                    add(f"{name}.{pname}", p)
    if config.bias != "none":
        for name, p in module.named_parameters():
            if not (name == "bias" or name.endswith(".bias")):
                continue
            owner = _peft_name(name)[: -len(".bias")]
            if config.bias == "all" or owner in adapted:
                add(name, p)
    return out


def load_adapter(module: nn.Module, model_id: Union[str, os.PathLike], adapter_name: str = "default",
                 is_trainable: bool = False) -> nn.Module:
    """Injects the adapter saved in `model_id` (by PEFT, :func:`save_adapter` or ranktune) into
    `module` and copies its weights. Every key and shape is checked first; problems are listed
    in one error. Frozen unless `is_trainable`. Returns `module`."""
    from .safetensors import load_file

    model_id = os.fspath(model_id)
    config = LoraConfig.from_pretrained(model_id)
    weights = load_file(os.path.join(model_id, "adapter_model.safetensors"))
    # Check against what injection would create, before touching the module.
    head = _default_output_head(module)
    layers = _adaptable_layers(module)
    matcher = _core.TargetMatcher(config.to_json_string(), [n for n, _ in layers], head)
    expected = {}
    adapted = []
    for name, layer in layers:
        if not matcher.is_target(name):
            continue
        options = matcher.adapter_options_for(name)
        base = layer.base_layer if isinstance(layer, LoraLinear) else layer
        shapes = {"lora_A": (options["r"], base.in_features), "lora_B": (base.out_features, options["r"])}
        if options["use_dora"]:
            shapes["lora_magnitude_vector"] = (base.out_features,)
        for kind, shape in shapes.items():
            expected[_core.peft_adapter_key(name, kind)] = (name, kind, shape)
        adapted.append(name)
    missing = [k for k in expected if k not in weights]
    wrong = [f"{k}: file {list(weights[k].shape)} vs model {list(v[2])}" for k, v in expected.items()
             if k in weights and tuple(weights[k].shape) != tuple(v[2])]
    extras = {_core.peft_parameter_key(n): t for n, t in _extra_parameters(module, config, adapted)}
    missing += [k for k in extras if k not in weights]
    wrong += [f"{k}: file {list(weights[k].shape)} vs model {list(t.shape)}" for k, t in extras.items()
              if k in weights and weights[k].shape != t.shape]
    unused = [k for k in weights if k not in expected and k not in extras]
    if not adapted or missing or wrong or unused:
        lines = [f"cannot load the adapter in {model_id}:"]
        if not adapted:
            lines.append("  the config's target_modules select no layer of this module (hint: wrong base model?)")
        if missing:
            lines.append(f"  missing ({len(missing)}): {', '.join(missing)}")
        if wrong:
            lines.append(f"  wrong shape ({len(wrong)}): {', '.join(wrong)}")
        if unused:
            lines.append(f"  not used by any layer ({len(unused)}): {', '.join(unused)}")
        raise ValueError("\n".join(lines))
    loaded = LoraConfig.from_dict({**json.loads(config.to_json_string()), "inference_mode": not is_trainable})
    inject(module, loaded, adapter_name, output_head=head)
    with torch.no_grad():
        for key, (name, kind, _) in expected.items():
            layer = module.get_submodule(name)
            target = {"lora_A": layer.lora_A, "lora_B": layer.lora_B,
                      "lora_magnitude_vector": layer.lora_magnitude_vector}[kind][adapter_name].weight
            target.copy_(weights[key])
        params = dict(module.named_parameters())
        by_peft_name = {_peft_name(n): p for n, p in params.items()}
        for key, _ in extras.items():
            by_peft_name[key[len("base_model.model."):]].copy_(weights[key])
    return module
