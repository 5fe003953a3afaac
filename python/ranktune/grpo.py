"""GRPO with TRL's API: :class:`GRPOConfig` and :class:`GRPOTrainer` over ranktune's C++ GRPO
trainer (docs/grpo.md): G completions per prompt sampled by the same model that trains, rewards
from the recipe's built-in rules and from Python callables, group-relative advantages, the
clipped loss and exact resume.

    def correct(prompts, completions, answer, **kwargs):
        return [1.0 if c.strip().endswith(a) else 0.0 for c, a in zip(completions, answer)]

    args = ranktune.GRPOConfig("runs/grpo", num_generations=8, max_completion_length=64, max_steps=50)
    trainer = ranktune.GRPOTrainer(model, reward_funcs=[correct, "format"], args=args, train_dataset=data)
    trainer.train()
"""

from typing import Any, Callable, List, Optional, Sequence, Union

from . import _core
from .training import Trainer, TrainingArguments, TrainOutput, _yaml_value

__all__ = ["GRPOConfig", "GRPOTrainer"]

# TRL's GRPOConfig names that are grpo.* recipe keys (the rest resolve as TrainingArguments' do).
_GRPO_KEYS = ("num_generations", "max_completion_length", "temperature", "top_p", "top_k", "repetition_penalty",
              "loss_type", "epsilon", "epsilon_high", "beta", "num_iterations", "scale_rewards",
              "mask_truncated_completions", "skip_zero_std_groups", "reward_weights", "calculator", "logprob_chunk")


class GRPOConfig(TrainingArguments):
    """The settings of a GRPO run with TRL's ``GRPOConfig`` names: ``num_generations``,
    ``max_completion_length``, ``temperature``, ``top_p``, ``top_k``, ``loss_type`` (grpo, bnpo,
    dr_grpo, dapo), ``epsilon``, ``epsilon_high``, ``beta``, ``num_iterations``, ``scale_rewards``
    ("group", "batch", "none"; True/False as TRL: group/none), ``mask_truncated_completions``,
    ``reward_weights`` — the ``grpo.*`` recipe keys — and every :class:`TrainingArguments` key
    (``learning_rate``, ``per_device_train_batch_size`` = completions per micro-batch, ``max_steps``,
    ``logging_steps``, ``save_steps``, ...). Validated by the C++ recipe parser."""

    def __init__(self, output_dir=None, *, recipe=None, overrides: Optional[Sequence[str]] = None, **keys: Any):
        grpo = {}
        for name in _GRPO_KEYS:
            if name in keys:
                value = keys.pop(name)
                if name == "scale_rewards" and isinstance(value, bool):
                    value = "group" if value else "none"
                grpo["grpo." + name] = value
        super().__init__(output_dir, recipe=recipe, overrides=overrides, **grpo, **keys)

    def __getattr__(self, name: str) -> Any:
        if name in _GRPO_KEYS:
            return self._values["grpo." + name]
        return super().__getattr__(name)


def _reward_name(fn: Callable) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


class GRPOTrainer(Trainer):
    """TRL's ``GRPOTrainer(model, reward_funcs, args, train_dataset)`` on ranktune's C++ trainer.

    `reward_funcs`: one or a list of: a name of a built-in reward ("accuracy", "accuracy_flexible",
    "format", "length"; scored with the recipe's template) or a Python callable
    ``fn(prompts, completions, **columns) -> list[float | None]`` called with one entry per
    completion and the keyword columns ``question``, ``answer`` (the gold final answer) and
    ``completion_length`` (tokens); None means not applicable (left out of the weighted sum, as
    TRL). Built-in rewards come first, then the callables, in the order given; ``reward_weights``
    follows that order. Without `reward_funcs` the recipe's ``grpo.reward_funcs`` apply.
    `train_dataset`: GSM8K-form dicts (``question``, ``answer``) or a JSONL path, as for
    :class:`ranktune.Trainer`. `model`, `processing_class`, `callbacks`, `progress_bar`: as there.
    ``train()`` returns a :class:`TrainOutput` whose metrics hold ``train_first_reward`` and
    ``train_reward`` (the last logged mean reward).
    """

    def __init__(self, model=None, reward_funcs: Union[str, Callable, Sequence[Union[str, Callable]], None] = None,
                 args: Union[GRPOConfig, TrainingArguments, str, None] = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, callbacks=None, progress_bar: Optional[bool] = None):
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         callbacks=callbacks, processing_class=processing_class, progress_bar=progress_bar)
        if reward_funcs is None:
            funcs: List[Union[str, Callable]] = []
        elif isinstance(reward_funcs, str) or callable(reward_funcs):
            funcs = [reward_funcs]
        else:
            funcs = list(reward_funcs)
        for f in funcs:
            if not isinstance(f, str) and not callable(f):
                raise TypeError(f"reward_funcs: expected a built-in reward name or a callable, got {type(f).__name__}")
        self.reward_funcs = funcs
        self._last_result = None

    def _setup(self, extra: Sequence[str] = ()) -> None:
        extra = list(extra)
        if self.reward_funcs:
            builtin = [f for f in self.reward_funcs if isinstance(f, str)]
            extra.append(f"grpo.reward_funcs={_yaml_value(builtin)}")
        super()._setup(extra)

    def _new_core(self, config, model, peft_model, tokenizer, train_examples, eval_examples):
        rewards = [(_reward_name(f), f) for f in self.reward_funcs if not isinstance(f, str)]
        return _core.GrpoTrainer(config, model, peft_model, tokenizer, train_examples, eval_examples, rewards)

    def train(self, resume_from_checkpoint: Union[str, bool, None] = None) -> TrainOutput:
        """Runs GRPO to ``max_steps`` (or the epochs); then the adapter, the final evaluation and
        the summary, as :meth:`ranktune.Trainer.train` (Ctrl-C, callbacks and resume alike)."""
        out = super().train(resume_from_checkpoint)
        rewards = [row["reward"] for row in self.log_history if "reward" in row]
        if rewards:
            out.metrics["train_first_reward"] = rewards[0]
            out.metrics["train_reward"] = rewards[-1]
        return out

    def evaluate(self):
        """Not available: the GRPO run evaluates at the end of train() (``eval.*``); score a model
        on request with :func:`ranktune.gsm8k.evaluate`."""
        raise NotImplementedError("GRPOTrainer evaluates at the end of train() (eval.*); use ranktune.gsm8k for more")
