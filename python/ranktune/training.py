"""Training with ranktune's C++ trainer behind transformers' ``Trainer``/``TrainingArguments`` API.

    args = ranktune.TrainingArguments(output_dir="runs/x", max_steps=50, lr=1e-3, template="gsm8k-cot")
    args = ranktune.TrainingArguments.from_yaml("examples/gsm8k/quickstart.yaml", overrides=["train.max_steps=50"])
    trainer = ranktune.Trainer(model, tokenizer, args, train_dataset=train, eval_dataset=test,
                               callbacks=[lambda logs: print(logs)])
    result = trainer.train()          # TrainOutput(global_step, training_loss, metrics, status, output_dir)
    trainer.evaluate()                # {"eval_loss": ..., "eval_accuracy_strict": ..., ...}

The arguments are the keys of the YAML recipes (docs/config.md), validated by the same C++ code
with the same errors. Ctrl-C during ``train()`` stops after the current step, saves a checkpoint
and then raises KeyboardInterrupt.
"""

import difflib
import json
import math
import os
import signal
import weakref
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Union

import torch

from . import _core
from .gsm8k import normalize_examples
from .modeling import CausalLM
from .peft import PeftModel
from .tokenization import Tokenizer

__all__ = ["TrainOutput", "Trainer", "TrainingArguments"]

# transformers' TrainingArguments names for recipe keys.
_HF_ALIASES = {
    "learning_rate": "train.lr",
    "num_train_epochs": "train.epochs",
    "per_device_train_batch_size": "train.batch_size",
    "per_device_eval_batch_size": "eval.batch_size",
    "logging_steps": "train.log_every",
    "save_steps": "train.save_every",
    "eval_steps": "train.eval_every",
    "lr_scheduler_type": "train.schedule",
    "save_total_limit": "train.keep_last",
    "resume_from_checkpoint": "train.resume_from",
}

_PLACEHOLDER = "<set by the Trainer>"
_key_cache: Dict[str, List[str]] = {}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in tree.items():
        path = prefix + k
        if isinstance(v, Mapping) and prefix == "":
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v
    return out


def _keys() -> Dict[str, List[str]]:
    """short name -> full keys (and every full key -> itself)."""
    if not _key_cache:
        defaults = _core.RunConfig.parse("", "<defaults>", ["model.path=x", "data.train_file=x"]).to_dict()
        for full in _flatten(defaults):
            _key_cache.setdefault(full, []).append(full)
            short = full.rsplit(".", 1)[-1]
            if short != full:
                _key_cache.setdefault(short, []).append(full)
    return _key_cache


def _resolve_key(name: str) -> str:
    """A keyword argument's recipe key: dotted keys as they are (validated by the C++ parser),
    transformers' names via _HF_ALIASES, short names by their section (train.* wins a tie; sample.* loses one)."""
    if "." in name:
        return name
    if name in _HF_ALIASES:
        return _HF_ALIASES[name]
    table = _keys()
    candidates = [k for k in table.get(name, []) if k != name] or table.get(name, [])
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        preferred = [c for c in candidates if c.startswith("train.")]
        if len(preferred) == 1:
            return preferred[0]
        # sample.* is `ranktune sample`'s, never the Trainer's: eval.temperature stays `temperature`.
        trainer_keys = [c for c in candidates if not c.startswith("sample.")]
        if len(trainer_keys) == 1:
            return trainer_keys[0]
        raise TypeError(f"TrainingArguments: '{name}' is ambiguous: use one of {sorted(candidates)}")
    names = sorted(set(table) | set(_HF_ALIASES))
    hint = difflib.get_close_matches(name, names, n=1)
    raise TypeError(f"TrainingArguments got an unexpected keyword argument '{name}'"
                    + (f" (did you mean '{hint[0]}'?)" if hint else "") + "; see docs/config.md")


def _yaml_value(v: Any) -> str:
    """A Python value as YAML flow text (JSON-quoted strings, so any text stays a string)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return ".nan" if math.isnan(v) else (".inf" if v > 0 else "-.inf")
        return repr(v)
    if isinstance(v, torch.dtype):
        return str(v).replace("torch.", "")
    if isinstance(v, os.PathLike):
        v = os.fspath(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        items = sorted(v) if isinstance(v, (set, frozenset)) else v
        return "[" + ", ".join(_yaml_value(x) for x in items) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_yaml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot use a {type(v).__name__} as a recipe value")


class TrainingArguments:
    """The settings of a run: the keys of ranktune's YAML recipes (docs/config.md).

    Keys may be given as keyword arguments by their short name (``lr``, ``max_steps``,
    ``batch_size``, ``r``, ``template``; a name in several sections means the ``train.`` one, e.g.
    ``seed``, ``output_dir``), by transformers' name (``learning_rate``, ``num_train_epochs``,
    ``per_device_train_batch_size``, ``logging_steps``, ``save_steps``, ``eval_steps``,
    ``lr_scheduler_type``, ``save_total_limit``), or dotted (``**{"eval.max_new_tokens": 64}`` or
    ``overrides=["eval.max_new_tokens=64"]``). ``recipe=`` (or :meth:`from_yaml`) starts from a
    YAML recipe. Everything goes through the C++ ``RunConfig::parse``: a misspelt key or a bad
    value raises :class:`ranktune.Error` naming the key and the nearest valid one. An unknown
    short name is a TypeError.

    ``model.path`` and ``data.train_file`` may be left out when the Trainer is given a model and
    a dataset. Values are readable back as attributes (``args.lr``, ``args.output_dir``) and
    :meth:`to_dict` gives the whole effective recipe.
    """

    def __init__(self, output_dir: Optional[Union[str, os.PathLike]] = None, *,
                 recipe: Optional[Union[str, os.PathLike]] = None, overrides: Optional[Sequence[str]] = None,
                 **keys: Any):
        self._text = ""
        self._source = "<TrainingArguments>"
        if recipe is not None:
            self._source = os.fspath(recipe)
            with open(self._source) as f:
                self._text = f.read()
        self._overrides: List[str] = [str(o) for o in (overrides or [])]
        if output_dir is not None:
            self._overrides.append(f"train.output_dir={_yaml_value(output_dir)}")
        for name, value in keys.items():
            self._overrides.append(f"{_resolve_key(name)}={_yaml_value(value)}")
        self._config = self._parse()
        self._values = _flatten(self._config.to_dict())

    @classmethod
    def from_yaml(cls, path: Union[str, os.PathLike], overrides: Optional[Sequence[str]] = None,
                  **keys: Any) -> "TrainingArguments":
        """Arguments from a YAML recipe (e.g. examples/gsm8k/quickstart.yaml) with dotted
        `overrides` ("train.lr=1e-4") and keyword arguments applied after it."""
        return cls(recipe=path, overrides=overrides, **keys)

    def replace(self, *, overrides: Optional[Sequence[str]] = None, **keys: Any) -> "TrainingArguments":
        """A copy with more overrides (keyword arguments as in the constructor)."""
        new = TrainingArguments.__new__(TrainingArguments)
        new._text, new._source = self._text, self._source
        new._overrides = list(self._overrides) + [str(o) for o in (overrides or [])]
        for name, value in keys.items():
            new._overrides.append(f"{_resolve_key(name)}={_yaml_value(value)}")
        new._config = new._parse()
        new._values = _flatten(new._config.to_dict())
        return new

    def _sets(self, key: str, extra: Sequence[str] = ()) -> bool:
        """True when the recipe or an override sets `key`."""
        return _core.recipe_sets_key(self._text, key) or any(
            o.split("=", 1)[0].strip() == key for o in list(self._overrides) + list(extra))

    def _parse(self, extra: Sequence[str] = ()) -> "_core.RunConfig":
        overrides = list(self._overrides) + list(extra)
        placeholders = [f"{key}={json.dumps(_PLACEHOLDER)}" for key in ("model.path", "data.train_file")
                        if not self._sets(key, extra)]
        return _core.RunConfig.parse(self._text, self._source, placeholders + overrides)

    @property
    def overrides(self) -> List[str]:
        """The dotted overrides applied after the recipe, in order."""
        return list(self._overrides)

    def to_dict(self) -> Dict[str, Any]:
        """The effective recipe (every key, defaults filled in) as nested dicts."""
        return self._config.to_dict()

    def to_yaml(self) -> str:
        """The effective recipe as YAML (what the run writes to config.yaml)."""
        return self._config.to_yaml()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            key = _resolve_key(name)
        except TypeError:
            raise AttributeError(f"TrainingArguments has no key '{name}'") from None
        return self._values[key]

    def __repr__(self) -> str:
        return f"TrainingArguments(source={self._source!r}, overrides={self._overrides!r})"


class TrainOutput(NamedTuple):
    """What :meth:`Trainer.train` returns (transformers' first three fields, then ranktune's)."""

    global_step: int
    training_loss: float
    metrics: Dict[str, float]
    status: str
    output_dir: str


def _try_tqdm():
    try:
        from tqdm.auto import tqdm  # optional: python3-tqdm may be absent
        return tqdm
    except Exception:
        return None


class Trainer:
    """ranktune's trainer (C++: loss-masked batches from a chain-of-thought template, AdamW with
    LoRA+ groups, schedules, accumulation, clipping, checkpoints and exact resume, NaN guard, a
    final GSM8K evaluation) with transformers' ``Trainer`` API.

    `model`: a :class:`~ranktune.PeftModel` (trained as it is), a :class:`~ranktune.CausalLM`
    (the recipe's ``adapter.*`` is attached: LoRA by default; ``method="full"`` trains every
    weight; the Trainer's ``model`` becomes the PeftModel), or None (``model.path`` is loaded).
    `tokenizer` (or transformers' `processing_class`): default: loaded from the model's directory.
    `train_dataset`/`eval_dataset`: a list of dicts in GSM8K form (``{"question", "answer":
    "... #### N"}``) or split (``{"question", "rationale", "answer"}``), what
    :func:`ranktune.gsm8k.load` returns, or a JSONL path (read with the recipe's ``data.*``
    options). Without `eval_dataset`, ``data.validation_size`` examples are held out (seeded by
    ``train.seed``), as ``ranktune train`` does. `callbacks`: callables ``cb(logs: dict)`` (or
    objects with ``on_log(logs)``) called with every metrics row (``step``, ``loss``, ``lr``,
    ``grad_norm``, ... and ``eval_*`` rows); returning True stops training after the current step
    (with a checkpoint). `progress_bar`: None shows tqdm when it is installed (else the C++ bar on
    stderr), False shows nothing.

    Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ... set) each worker runs the same script and the
    Trainer joins the group: ``batch_size`` is per worker, rank 0 writes the run and shows the bar,
    callbacks run on every worker (docs/distributed.md).

    Files in ``train.output_dir``: the adapter (PEFT format), ``checkpoint-<step>/``,
    ``metrics.jsonl``, ``training-curve.svg``, ``predictions.jsonl``, ``summary.json``,
    ``config.yaml``.
    """

    def __init__(self, model: Union[CausalLM, PeftModel, None] = None, tokenizer: Optional[Tokenizer] = None,
                 args: Union[TrainingArguments, str, os.PathLike, None] = None, train_dataset=None, eval_dataset=None,
                 callbacks: Optional[Iterable[Callable[[Dict[str, float]], Any]]] = None,
                 processing_class: Optional[Tokenizer] = None, progress_bar: Optional[bool] = None):
        if args is None:
            args = TrainingArguments()
        elif isinstance(args, (str, os.PathLike)):
            args = TrainingArguments.from_yaml(args)
        elif not isinstance(args, TrainingArguments):
            raise TypeError(f"args must be ranktune.TrainingArguments or a recipe path, got {type(args).__name__}")
        if model is not None and not isinstance(model, (CausalLM, PeftModel)):
            raise TypeError(f"model must be a ranktune CausalLM or PeftModel, got {type(model).__name__}")
        self.args = args
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else processing_class
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.callbacks: List[Any] = list(callbacks or [])
        self.progress_bar = progress_bar
        self.log_history: List[Dict[str, float]] = []
        self._core: Optional[_core.Trainer] = None
        self._config: Optional[_core.RunConfig] = None
        self._bar = None
        self._callback_error: Optional[BaseException] = None
        self._stop_requested = False

    def add_callback(self, callback: Callable[[Dict[str, float]], Any]) -> None:
        """Adds a callback (see the class documentation)."""
        self.callbacks.append(callback)

    # ---- setup -------------------------------------------------------------------------------------------
    def _setup(self, extra: Sequence[str] = ()) -> None:
        """Passes the inputs to the C++ setup, which decides everything else once, as for
        ``ranktune train``: the model loaded from model.path when none is given, the validation
        examples (eval_dataset, data.eval_file, else held out of the training data), the adapter
        attached, the number of steps."""
        args = self.args
        extra = list(extra)
        model = self.model
        if model is None:
            if not args._sets("model.path"):
                raise _core.Error("Trainer needs a model, or model.path in the TrainingArguments")
        elif not args._sets("model.path"):
            base = model.base_model if isinstance(model, PeftModel) else model
            extra.append(f"model.path={_yaml_value(base.name_or_path or '<in-memory model>')}")

        # The data: files by their path (read with the recipe's data.* options), lists in memory.
        train_examples = eval_examples = None
        if isinstance(self.train_dataset, (str, os.PathLike)):
            extra.append(f"data.train_file={_yaml_value(os.fspath(self.train_dataset))}")
        elif self.train_dataset is not None:
            train_examples = normalize_examples(self.train_dataset, "train_dataset")
            if not args._sets("data.train_file"):
                extra.append(f"data.train_file={_yaml_value('<train_dataset>')}")
        elif not args._sets("data.train_file"):
            raise _core.Error("Trainer needs a train_dataset, or data.train_file in the TrainingArguments")
        if isinstance(self.eval_dataset, (str, os.PathLike)):
            extra.append(f"data.eval_file={_yaml_value(os.fspath(self.eval_dataset))}")
        elif self.eval_dataset is not None:
            eval_examples = normalize_examples(self.eval_dataset, "eval_dataset")

        config = args._parse(extra)
        self._config = config
        given_peft = model._core if isinstance(model, PeftModel) else None
        given_model = model._core if model is not None and given_peft is None else None
        given_tokenizer = self.tokenizer._core if self.tokenizer is not None else None
        core = self._new_core(config, given_model, given_peft, given_tokenizer, train_examples, eval_examples)
        # A weak reference: the C++ trainer must not keep this Python object alive (a cycle the
        # garbage collector cannot see through).
        on_metrics = weakref.WeakMethod(self._on_metrics)
        core.add_callback(lambda row: on_metrics() and on_metrics()(row))
        core.setup()
        self._core = core
        # What the setup built: the tokenizer and model loaded from model.path, the adapter attached.
        model_path = _flatten(config.to_dict())["model.path"]
        if self.tokenizer is None:
            self.tokenizer = Tokenizer(core.tokenizer, name_or_path=model_path)
        if model is None:
            model = _wrap_loaded_model(core.model, model_path)
        if not isinstance(model, PeftModel) and core.peft_model is not None:
            model = PeftModel._wrap(model, core.peft_model)
        self.model = model

    def _new_core(self, config, model, peft_model, tokenizer, train_examples, eval_examples):
        """The C++ trainer this Python one drives (GRPOTrainer makes a GRPO one)."""
        return _core.Trainer(config, model, peft_model, tokenizer, train_examples, eval_examples)

    def _ensure_setup(self) -> None:
        if self._core is None:
            self._setup()

    # ---- callbacks -----------------------------------------------------------------------------------------
    def _on_metrics(self, row: Dict[str, float]) -> None:
        logs = dict(row)
        self.log_history.append(logs)
        if self._bar is not None and "loss" in logs:
            self._bar.update(int(logs["step"]) - self._bar.n)
            self._bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}")
        for callback in self.callbacks:
            try:
                result = callback(logs) if callable(callback) else callback.on_log(logs)
            except BaseException as e:  # re-raised by train() once the C++ loop has stopped
                self._callback_error = e
                if self._core is not None:
                    self._core.request_stop()
                return
            if result is True:
                self._stop_requested = True
                self._core.request_stop()

    # ---- train / evaluate -----------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: Union[str, bool, None] = None) -> TrainOutput:
        """Runs to ``train.max_steps`` (or the epochs), saves the adapter, evaluates (eval.*) and
        writes the summary. `resume_from_checkpoint`: a checkpoint directory, or True for the
        newest in output_dir; a larger ``max_steps`` or ``epochs`` than the checkpoint's continues
        to the new total. Ctrl-C (SIGINT) saves a checkpoint after the current step, then raises
        KeyboardInterrupt (SIGTERM, SIGHUP: SystemExit with code 128 + the signal number); an exception in a callback stops the run the same way and is
        re-raised."""
        if resume_from_checkpoint:
            where = "latest" if resume_from_checkpoint is True else os.fspath(resume_from_checkpoint)
            self._core = None
            self._setup([f"train.resume_from={_yaml_value(where)}"])
        else:
            self._ensure_setup()
        self._callback_error = None
        self._stop_requested = False
        # Under torchrun (docs/distributed.md) only rank 0 shows a bar.
        show = self.progress_bar is not False and os.environ.get("RANK", "0") == "0"
        tqdm = _try_tqdm() if show else None
        self._core.set_progress_bar(show and tqdm is None)
        if tqdm is not None:
            self._bar = tqdm(total=self._estimated_steps(), desc="train", unit="step")
        try:
            result = self._core.train()
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error
        if result["status"] == "interrupted" and not self._stop_requested and result["signal"] not in (0, signal.SIGINT):
            # SIGTERM / SIGHUP: end the interpreter with the conventional code, the checkpoint saved.
            raise SystemExit(128 + int(result["signal"]))
        if result["status"] == "interrupted" and not self._stop_requested:
            raise KeyboardInterrupt(f"training interrupted at step {result['steps']}; a checkpoint was saved in "
                                    f"{result['output_dir']} (resume with resume_from_checkpoint=True)")
        metrics = {"train_runtime": result["seconds"], "train_loss": result["last_loss"],
                   "train_first_loss": result["first_loss"]}
        for row in reversed(self.log_history):
            if any(k.startswith("eval_") for k in row):
                metrics.update({k: v for k, v in row.items() if k.startswith("eval_")})
                break
        return TrainOutput(int(result["steps"]), float(result["last_loss"]), metrics, result["status"],
                           result["output_dir"])

    def _estimated_steps(self) -> Optional[int]:
        return int(self._core.total_steps)

    def evaluate(self) -> Dict[str, float]:
        """Validation loss and greedy GSM8K accuracy on the evaluation questions (``eval.*``):
        {"eval_loss", "eval_accuracy_strict", "eval_accuracy_flexible", "eval_format_rate"}."""
        self._ensure_setup()
        metrics = dict(self._core.evaluate())
        self.log_history.append(dict(metrics))
        return metrics

    def save_model(self, output_dir: Optional[Union[str, os.PathLike]] = None) -> None:
        """Saves the adapter (PEFT format), or the full model's weights, to `output_dir`
        (default ``train.output_dir``)."""
        target = os.fspath(output_dir) if output_dir is not None else self.args.output_dir
        self.model.save_pretrained(target)

    def request_stop(self) -> None:
        """Asks a running train() to stop after the current step (a checkpoint is saved)."""
        if self._core is not None:
            self._stop_requested = True
            self._core.request_stop()


def _wrap_loaded_model(core: "_core.CausalLM", path: str) -> CausalLM:
    """The Python face of the model the C++ setup loaded from model.path (`path`)."""
    config_file = os.path.join(path, "config.json")
    raw = None
    if os.path.isfile(config_file):
        with open(config_file) as f:
            raw = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    return CausalLM(core, name_or_path=path, raw_config=raw)
