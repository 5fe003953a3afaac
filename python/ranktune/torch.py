"""LoRA/DoRA for ordinary ``torch.nn.Module``s, run by ranktune's C++ adapter layer.

    net = MyNet()
    ranktune.torch.inject(net, ranktune.LoraConfig(r=8, target_modules=["fc1", "fc2"], use_dora=True))
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    ...
    ranktune.torch.save_adapter(net, "runs/my-adapter")        # PEFT's files and keys

:func:`inject` replaces each ``nn.Linear`` (and transformers' GPT-2 ``Conv1D``) the config selects
by a :class:`LoraLinear`, a thin ``nn.Module`` over ``ranktune._core.Linear`` — the C++
``ranktune::peft::Linear`` that ranktune's own models use — built around the original layer's
``weight`` and ``bias`` (shared, not copied). Everything an adapter does happens there: PEFT's
target matching, initialisation, scaling, dtypes, the forward and backward passes (DoRA's row norm
from the low-rank factors, with no out×in temporary), merging, what trains, and PEFT's files:

    LoRA:  y = W x + b + s · B A drop(x)
    DoRA:  y = m ⊙ (W x + s · B A x) / sg(‖W + s·B A‖_row) + b       (docs/adapters.md)

The Python side keeps PEFT's module structure and names — ``base_layer``,
``lora_A.<name>.weight``, ``lora_B.<name>.weight``, ``lora_magnitude_vector.<name>.weight``,
``modules_to_save`` wrappers — whose ``nn.Parameter``s are the C++ layer's own tensors, so an
optimizer, ``state_dict`` and ``load_state_dict`` act on what the C++ forward reads. Change them
in place (as optimizers and ``load_state_dict`` do); a new Parameter object assigned in Python is
not seen by the C++ layer.
"""

import copy
import dataclasses
import json
import os
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import _core
from .peft import LoraConfig

__all__ = ["DoraMagnitude", "LoraLinear", "ModulesToSaveWrapper", "adapter_parameters", "inject", "load_adapter",
           "save_adapter", "set_adapter"]

_CONFIGS_ATTR = "peft_config"
_ADAPTER_SLOTS = ("lora_A", "lora_B", "lora_magnitude_vector")


def _is_conv1d(module: nn.Module) -> bool:
    """transformers' GPT-2 ``Conv1D`` (weight [in, out], ``nf`` outputs), known without importing transformers."""
    weight = getattr(module, "weight", None)
    return (type(module).__name__ == "Conv1D" and isinstance(weight, torch.Tensor) and weight.dim() == 2
            and weight.shape[1] == getattr(module, "nf", None))


def _is_adaptable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or _is_conv1d(module)


class AdapterWeight(nn.Module):
    """One adapter tensor where PEFT keeps it (``lora_A.<name>.weight``, ...): the C++ layer's own."""

    def __init__(self, weight: nn.Parameter):
        super().__init__()
        self.weight = weight


class DoraMagnitude(AdapterWeight):
    """DoRA's learned magnitude m, one value per output row (``.weight``, as PEFT's DoraLinearLayer)."""


class LoraLinear(nn.Module):
    """An ``nn.Linear`` or GPT-2 ``Conv1D`` (``base_layer``, frozen) with named LoRA/DoRA adapters,
    computed by ranktune's C++ ``peft::Linear`` around the base layer's own tensors. Several active
    adapters add their updates, each relative to the base, in insertion order (PEFT's order).

    `layer` is the ``ranktune._core.Linear`` to use (it must wrap `base_layer`'s weight); by default
    a new one is built around it.
    """

    def __init__(self, base_layer: nn.Module, layer: Optional["_core.Linear"] = None):
        super().__init__()
        if not _is_adaptable(base_layer):
            raise TypeError(f"LoraLinear wraps nn.Linear or GPT-2's Conv1D, got {type(base_layer).__name__}")
        if layer is None:
            layer = _core.Linear(base_layer.weight, base_layer.bias, fan_in_fan_out=_is_conv1d(base_layer))
        elif layer.weight is not base_layer.weight:
            raise _core.Error("the ranktune Linear given does not wrap this base layer's weight")
        self.base_layer = base_layer
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_magnitude_vector = nn.ModuleDict()
        self._layer = layer
        self.train(base_layer.training)
        self._sync_adapters()

    # ---- the C++ layer's state, read where it lives ------------------------------------------------
    in_features = property(lambda self: self._layer.in_features, doc="The input size.")
    out_features = property(lambda self: self._layer.out_features, doc="The output size.")
    fan_in_fan_out = property(lambda self: self._layer.fan_in_fan_out, doc="The weight is stored [in, out] (Conv1D).")
    weight = property(lambda self: self.base_layer.weight, doc="The base weight (frozen).")
    bias = property(lambda self: self.base_layer.bias, doc="The base bias or None.")
    active_adapters = property(lambda self: self._layer.active_adapters, doc="The adapters forward applies.")
    disable_adapters = property(lambda self: not self._layer.adapters_enabled, doc="forward returns the base output.")
    merged = property(lambda self: self._layer.merged, doc="Some adapters are folded into the base weight.")
    merged_adapters = property(lambda self: self._layer.merged_adapters, doc="The adapters folded in, in order.")

    def _options(self, key: str) -> Dict[str, object]:
        return {name: self._layer.adapter_options(name)[key] for name in self._layer.adapter_names}

    r = property(lambda self: self._options("r"), doc="{adapter: rank}.")
    lora_alpha = property(lambda self: self._options("lora_alpha"), doc="{adapter: lora_alpha}.")
    scaling = property(lambda self: self._options("scaling"), doc="{adapter: s} (lora_alpha / r, or / sqrt(r)).")
    use_dora = property(lambda self: self._options("use_dora"), doc="{adapter: DoRA or not}.")

    # ---- adapters ----------------------------------------------------------------------------------
    def _sync_adapters(self) -> None:
        """Registers the C++ layer's new adapter tensors as nn.Parameters (which the layer then
        uses in place of its own) and drops the holders of deleted adapters."""
        names = self._layer.adapter_names
        for slot in _ADAPTER_SLOTS:
            holders = getattr(self, slot)
            for gone in [n for n in holders if n not in names]:
                del holders[gone]
        for name in names:
            if name in self.lora_A:
                continue
            shared = [None if t is None else nn.Parameter(t, requires_grad=t.requires_grad)
                      for t in self._layer.adapter_weights(name)]
            self._layer.share_adapter_weights(name, *shared)
            self.lora_A[name] = AdapterWeight(shared[0])
            self.lora_B[name] = AdapterWeight(shared[1])
            if shared[2] is not None:
                self.lora_magnitude_vector[name] = DoraMagnitude(shared[2])

    def update_layer(self, adapter_name: str, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                     init_lora_weights: Union[bool, str] = True, use_rslora: bool = False,
                     use_dora: bool = False) -> None:
        """Adds adapter `adapter_name` (active), initialised by the C++ layer as PEFT does."""
        self._layer.add_adapter(adapter_name, r, lora_alpha, lora_dropout, init_lora_weights, use_rslora, use_dora)
        self._sync_adapters()

    def delete_adapter(self, adapter_name: str) -> None:
        """Removes an adapter (unmerging it first if merged)."""
        self._layer.delete_adapter(adapter_name)
        self._sync_adapters()

    def set_adapter(self, adapter_names: Union[str, Sequence[str]]) -> None:
        """Makes exactly these adapters active on this layer (what trains is set by
        :func:`ranktune.torch.set_adapter` for the whole module)."""
        self._layer.set_active_adapters(_as_list(adapter_names))

    def enable_adapters(self, enabled: bool) -> None:
        """Disabled, forward returns the base output (a merged layer is unmerged first)."""
        self._layer.set_adapters_enabled(enabled)

    def merge(self, safe_merge: bool = False, adapter_names: Optional[Sequence[str]] = None) -> None:
        """Folds adapters (default: the active ones) into the base weight; `safe_merge` checks the
        result for NaN/Inf before writing it."""
        self._layer.merge(safe_merge, list(adapter_names or []))

    def unmerge(self) -> None:
        """Reverses merge() exactly."""
        self._layer.unmerge()

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """s · B A in the base weight's layout."""
        return self._layer.delta_weight(adapter_name)

    # ---- nn.Module ---------------------------------------------------------------------------------
    def __deepcopy__(self, memo: dict) -> "LoraLinear":
        """A copy with its own base layer and C++ layer (adapters copied; refused while merged)."""
        copied = LoraLinear(copy.deepcopy(self.base_layer, memo))
        copied._layer.copy_adapters_from(self._layer)
        copied._sync_adapters()
        copied.train(self.training)
        memo[id(self)] = copied
        return copied

    def train(self, mode: bool = True) -> "LoraLinear":
        """Training mode turns adapter dropout on (in the C++ layer too)."""
        super().train(mode)
        self._layer.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base output plus every active adapter's update (the C++ layer's forward)."""
        return self._layer.forward(x)

    def extra_repr(self) -> str:
        """The C++ layer, for print(module)."""
        return repr(self._layer)


class ModulesToSaveWrapper(nn.Module):
    """A module trained in full (``modules_to_save``), as PEFT keeps it: ``original_module``
    (frozen, untouched — a tied partner stays as it was) and one trained copy per adapter in
    ``modules_to_save.<adapter>``; forward runs the active adapter's copy."""

    def __init__(self, module_to_save: nn.Module, adapter_name: str, module_copy: Optional[nn.Module] = None):
        super().__init__()
        if isinstance(module_to_save, (nn.ModuleDict, nn.ModuleList, nn.ParameterDict, nn.ParameterList)):
            raise TypeError(f"modules_to_save cannot be applied to modules of type {type(module_to_save).__name__}")
        self.original_module = module_to_save
        self.modules_to_save = nn.ModuleDict()
        self.active_adapter = adapter_name
        self.update(adapter_name, module_copy)

    def update(self, adapter_name: str, module_copy: Optional[nn.Module] = None) -> None:
        """Adds `adapter_name`'s copy (default: a deep copy of the original)."""
        self.modules_to_save[adapter_name] = module_copy if module_copy is not None else copy.deepcopy(
            self.original_module)

    def set_adapter(self, adapter_name: str) -> None:
        """Runs `adapter_name`'s copy (the original when that adapter has none)."""
        self.active_adapter = adapter_name

    @property
    def weight(self) -> torch.Tensor:
        """The weight of the module forward runs."""
        return self._active_module().weight

    def _active_module(self) -> nn.Module:
        if self.active_adapter not in self.modules_to_save:
            return self.original_module
        return self.modules_to_save[self.active_adapter]

    def forward(self, *args, **kwargs):
        """The active adapter's copy (the original when that adapter has none)."""
        return self._active_module()(*args, **kwargs)


# ---- the C++ stand-in for a module -----------------------------------------------------------------


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _adaptable_layers(module: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(qualified name, layer) for every nn.Linear, Conv1D and LoraLinear, not descending into
    them or into modules_to_save wrappers."""
    out = []

    def walk(prefix: str, m: nn.Module) -> None:
        for child_name, child in m.named_children():
            name = _join(prefix, child_name)
            if isinstance(child, LoraLinear) or _is_adaptable(child):
                out.append((name, child))
            elif not isinstance(child, ModulesToSaveWrapper):
                walk(name, child)

    walk("", module)
    return out


def _module_tree(module: nn.Module, plain: Sequence[str] = ()):
    """``_core.ModuleTree`` standing for `module`, with the same qualified names: each adaptable
    layer as a ranktune Linear (a LoraLinear's own; a new one around a plain layer's tensors) and
    every other parameter shared. A modules_to_save wrapper stands as its original module (the C++
    side makes its own copies to carry values to and from files: :func:`_saved_copies`). Modules
    named in `plain` stand as their parameters only (never adapted). Returns (tree, {name: (new Linear, plain layer)})."""
    entries: List[Tuple[str, object]] = []
    fresh: Dict[str, Tuple[object, nn.Module]] = {}

    def walk(prefix: str, m: nn.Module) -> None:
        for pname, p in m._parameters.items():
            if p is not None:
                entries.append((_join(prefix, pname), p))
        for child_name, child in m.named_children():
            name = _join(prefix, child_name)
            if name in plain:
                walk(name, child)
            elif isinstance(child, ModulesToSaveWrapper):
                walk(name, child.original_module)
            elif isinstance(child, LoraLinear):
                entries.append((name, child._layer))
            elif _is_adaptable(child):
                layer = _core.Linear(child.weight, child.bias, fan_in_fan_out=_is_conv1d(child))
                fresh[name] = (layer, child)
                entries.append((name, layer))
            else:
                walk(name, child)

    walk("", module)
    return _core.ModuleTree(entries), fresh


def _saved_copies(copies: Dict[str, nn.Module]) -> Dict[str, torch.Tensor]:
    """{qualified parameter name: tensor} of modules_to_save copies ({module name: copy})."""
    return {_join(name, pname): p for name, c in copies.items() for pname, p in c.named_parameters()}


def _adopt_adapted_layers(module: nn.Module, adapted: Sequence[str], fresh: Dict[str, Tuple[object, nn.Module]]) -> None:
    """Module surgery after the C++ layers got their adapters: a plain layer becomes a LoraLinear
    over its new ranktune Linear; a LoraLinear registers its new adapter tensors."""
    for name in adapted:
        if name in fresh:
            layer, base = fresh[name]
            _set_submodule(module, name, LoraLinear(base, layer))
        else:
            module.get_submodule(name)._sync_adapters()


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _default_output_head(module: nn.Module) -> str:
    get = getattr(module, "get_output_embeddings", None)
    if callable(get):
        head = get()
        for name, m in module.named_modules():
            if m is head and head is not None:
                return name.rsplit(".", 1)[-1]
    return "lm_head"


def _configs(module: nn.Module) -> Dict[str, LoraConfig]:
    configs = getattr(module, _CONFIGS_ATTR, None)
    if configs is None:
        configs = {}
        setattr(module, _CONFIGS_ATTR, configs)
    return configs


def _as_list(names: Union[str, Sequence[str]]) -> List[str]:
    return [names] if isinstance(names, str) else list(names)


def _layers_json(config: LoraConfig) -> str:
    """The config for the C++ calls that act on layers: modules_to_save are the Python wrappers' job."""
    values = json.loads(config.to_json_string())
    values["modules_to_save"] = None
    return json.dumps(values)


def _with_layer_layout(module: nn.Module, config: LoraConfig, head: str) -> LoraConfig:
    """PEFT's correction of fan_in_fan_out to the layout of the layers the config targets (Conv1D
    stores [in, out]), with PEFT's warnings; the saved config then says what the layers are."""
    layers = _adaptable_layers(module)
    matcher = _core.TargetMatcher(config.to_json_string(), [n for n, _ in layers], head)
    value = config.fan_in_fan_out
    for name, layer in layers:
        if not matcher.is_target(name):
            continue
        transposed = layer.fan_in_fan_out if isinstance(layer, LoraLinear) else _is_conv1d(layer)
        if transposed and not value:
            warnings.warn("fan_in_fan_out is set to False but the target module is `Conv1D`. "
                          "Setting fan_in_fan_out to True.")
            value = True
        elif value and not transposed:
            warnings.warn("fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. "
                          "Setting fan_in_fan_out to False.")
            value = False
    return config if value == config.fan_in_fan_out else dataclasses.replace(config, fan_in_fan_out=value)


# ---- modules_to_save -----------------------------------------------------------------------------


def _modules_to_save(module: nn.Module, config: LoraConfig, head: str) -> List[Tuple[str, nn.Module]]:
    """(name, module or wrapper) that config.modules_to_save names, outermost only."""
    if not config.modules_to_save:
        return []
    matcher = _core.TargetMatcher(config.to_json_string(), [], head)
    out: List[Tuple[str, nn.Module]] = []
    for name, m in module.named_modules():
        if name and matcher.is_module_to_save(name) and not any(name.startswith(o + ".") for o, _ in out):
            out.append((name, m))
    return out


def _new_copies(targets: List[Tuple[str, nn.Module]]) -> Dict[str, nn.Module]:
    """A fresh trained copy for each module to save (of the original when already wrapped)."""
    return {name: copy.deepcopy(m.original_module if isinstance(m, ModulesToSaveWrapper) else m)
            for name, m in targets}


def _install_copies(module: nn.Module, targets: List[Tuple[str, nn.Module]], copies: Dict[str, nn.Module],
                    adapter_name: str) -> None:
    for name, m in targets:
        if isinstance(m, ModulesToSaveWrapper):
            m.update(adapter_name, copies[name])
            m.set_adapter(adapter_name)
        else:
            _set_submodule(module, name, ModulesToSaveWrapper(m, adapter_name, copies[name]))


def _mark_wrappers_trainable(module: nn.Module, config: LoraConfig, active: Sequence[str]) -> None:
    """PEFT's rule for modules_to_save (the C++ one covers adapters and biases): the original
    frozen, the active adapter's copy trained, the other copies frozen."""
    for m in module.modules():
        if isinstance(m, ModulesToSaveWrapper):
            m.original_module.requires_grad_(False)
            for name, c in m.modules_to_save.items():
                c.requires_grad_(name == m.active_adapter and name in active and not config.inference_mode)


def _active_adapters(module: nn.Module) -> List[str]:
    names: List[str] = []
    for m in module.modules():
        if isinstance(m, LoraLinear):
            names += [n for n in m.active_adapters if n not in names]
    return names


# ---- the API ---------------------------------------------------------------------------------------


def inject(module: nn.Module, config: LoraConfig, adapter_name: str = "default",
           output_head: Optional[str] = None) -> nn.Module:
    """Adds adapter `adapter_name` to every ``nn.Linear`` and GPT-2 ``Conv1D`` of `module` that
    `config` selects (PEFT's matching, the C++ matcher ranktune's models use), replacing it in
    place by a :class:`LoraLinear` (an existing LoraLinear gets another adapter), wraps
    ``modules_to_save`` as PEFT does (:class:`ModulesToSaveWrapper`), then sets what trains as PEFT
    does: everything is frozen except the active adapters, the biases ``config.bias`` names and the
    modules_to_save copies. The new adapter is active (adapters already attached keep their state).
    `output_head` is what "all-linear" leaves out (default: the module of
    ``get_output_embeddings()``, else "lm_head"). ``fan_in_fan_out`` is corrected to the layers'
    layout with PEFT's warning. Returns `module`.

    Raises ValueError (naming some of the module's linear layers) when nothing matches.
    """
    if not isinstance(config, LoraConfig):
        raise TypeError(f"expected a ranktune.LoraConfig, got {type(config).__name__}")
    configs = _configs(module)
    if adapter_name in configs:
        raise _core.Error(f"adapter '{adapter_name}' already exists")
    head = output_head if output_head is not None else _default_output_head(module)
    config = _with_layer_layout(module, config, head)
    to_save = _modules_to_save(module, config, head)
    copies = _new_copies(to_save)
    tree, fresh = _module_tree(module, plain=[name for name, _ in to_save])  # never adapted (as PEFT)
    report = tree.inject(_layers_json(config), adapter_name, head)  # the C++ inject sets what trains
    _adopt_adapted_layers(module, report["adapted_modules"], fresh)
    if config.modules_to_save and not to_save:
        warnings.warn(f"modules_to_save {config.modules_to_save!r} matched no module")
    _install_copies(module, to_save, copies, adapter_name)
    configs[adapter_name] = config
    _mark_wrappers_trainable(module, config, _active_adapters(module))
    return module


def set_adapter(module: nn.Module, adapter_names: Union[str, Sequence[str]]) -> None:
    """Makes exactly these adapters active (and trainable) in every LoraLinear of `module`; the
    modules_to_save wrappers run the first one's copy."""
    names = _as_list(adapter_names)
    configs = _configs(module)
    for n in names:
        if n not in configs:
            raise _core.Error(f"no adapter '{n}'; adapters: {sorted(configs)}")
    for m in module.modules():
        if isinstance(m, ModulesToSaveWrapper):
            m.set_adapter(names[0])
    tree, _ = _module_tree(module)
    tree.set_active_adapters(names)
    tree.mark_trainable(_layers_json(configs[names[0]]), names)
    _mark_wrappers_trainable(module, configs[names[0]], names)


def adapter_parameters(module: nn.Module, adapter_name: Optional[str] = None) -> Iterator[Tuple[str, nn.Parameter]]:
    """(name, parameter) of the adapters' own weights (A, B, magnitudes), of one adapter or all."""
    for prefix, m in module.named_modules():
        if not isinstance(m, LoraLinear):
            continue
        for slot in _ADAPTER_SLOTS:
            for name, holder in getattr(m, slot).items():
                if adapter_name is None or name == adapter_name:
                    yield _join(prefix, f"{slot}.{name}.weight"), holder.weight


# ---- files -------------------------------------------------------------------------------------------


def save_adapter(module: nn.Module, save_directory: Union[str, os.PathLike], adapter_name: str = "default") -> None:
    """Writes `save_directory`/adapter_config.json (inference_mode true, as PEFT writes it) and
    adapter_model.safetensors with PEFT's keys, by ranktune's C++ PEFT writer:
    ``base_model.model.<module>.lora_A.weight``, ``.lora_B.weight``, ``.lora_magnitude_vector``
    (DoRA), trained biases (``<module>.base_layer.bias`` for adapted layers) and the
    modules_to_save copies under their module's name."""
    configs = _configs(module)
    if adapter_name not in configs:
        raise _core.Error(f"no adapter '{adapter_name}'; adapters: {sorted(configs)}")
    tree, _ = _module_tree(module)
    copies = {name: m.modules_to_save[adapter_name] for name, m in module.named_modules()
              if isinstance(m, ModulesToSaveWrapper) and adapter_name in m.modules_to_save}
    tree.save_adapter(configs[adapter_name].to_json_string(), adapter_name, os.fspath(save_directory),
                      _saved_copies(copies))


def load_adapter(module: nn.Module, model_id: Union[str, os.PathLike], adapter_name: str = "default",
                 is_trainable: bool = False) -> nn.Module:
    """Attaches the adapter saved in `model_id` (by PEFT, :func:`save_adapter` or ranktune) to
    `module`, by ranktune's C++ PEFT reader: every key and shape is checked first, problems are
    listed in one error, and the module is left unchanged. The adapter is active; it trains only
    with `is_trainable`. Returns `module`."""
    model_id = os.fspath(model_id)
    configs = _configs(module)
    if adapter_name in configs:
        raise _core.Error(f"adapter '{adapter_name}' already exists")
    head = _default_output_head(module)
    config = _with_layer_layout(module, LoraConfig.from_pretrained(model_id), head)
    to_save = _modules_to_save(module, config, head)
    copies = _new_copies(to_save)
    tree, fresh = _module_tree(module)
    report = tree.load_adapter(model_id, adapter_name, is_trainable, head)  # sets what trains, too
    loaded = dict(tree.saved_module_tensors(adapter_name))
    with torch.no_grad():
        for name, p in _saved_copies(copies).items():
            p.copy_(loaded[name])
    _adopt_adapted_layers(module, report["adapted_modules"], fresh)
    _install_copies(module, to_save, copies, adapter_name)
    config = dataclasses.replace(config, inference_mode=not is_trainable)
    configs[adapter_name] = config
    _mark_wrappers_trainable(module, config, _active_adapters(module))
    return module
