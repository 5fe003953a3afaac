"""GRPOConfig (TRL's names onto the grpo.* recipe keys) and GRPOTrainer (TRL's API on the C++ GRPO
trainer): Python reward callables with the dataset's columns, None as not applicable, built-in
rewards by name, errors from a reward naming it. On the repository's quickstart model."""

import json

import pytest

import ranktune
from conftest import QUICKSTART_MODEL, ROOT, need

GRPO_DATA = ROOT / "examples" / "grpo" / "data"


def fresh_model():
    return ranktune.AutoModelForCausalLM.from_pretrained(need(QUICKSTART_MODEL), init_seed=0)


def small_config(tmp_path, **keys):
    settings = dict(num_generations=4, max_completion_length=6, per_device_train_batch_size=8, max_steps=2,
                    logging_steps=1, learning_rate=1e-2, temperature=1.2,
                    **{"adapter.target_modules": ["q_proj", "v_proj"], "adapter.r": 4, "eval.max_new_tokens": 0,
                       "data.validation_size": 0})
    settings.update(keys)
    return ranktune.GRPOConfig(tmp_path, **settings)


def test_grpo_config_maps_trls_names_to_the_recipe():
    args = ranktune.GRPOConfig("runs/x", num_generations=4, temperature=0.9, loss_type="dr_grpo", beta=0.04,
                               scale_rewards=False, reward_weights=[1.0, 0.5], learning_rate=1e-5)
    recipe = args.to_dict()
    assert recipe["grpo"]["num_generations"] == 4 and recipe["grpo"]["temperature"] == 0.9
    assert recipe["eval"]["temperature"] == 0.7  # not the evaluation's sampling
    assert recipe["grpo"]["scale_rewards"] == "none" and recipe["grpo"]["reward_weights"] == [1.0, 0.5]
    assert recipe["train"]["lr"] == 1e-5
    assert args.temperature == 0.9 and args.loss_type == "dr_grpo"
    with pytest.raises(ranktune.Error, match="grpo.loss_type"):
        ranktune.GRPOConfig("runs/x", loss_type="ppo")


def test_grpo_trainer_scores_completions_with_python_rewards(tmp_path):
    data = ranktune.gsm8k.load(need(GRPO_DATA) / "grpo.jsonl", limit=16)
    calls = []

    def longer_is_better(prompts, completions, answer, completion_length, **kwargs):
        calls.append((len(prompts), len(completions), len(answer), kwargs.get("question", [None])[0]))
        # None (not applicable) for every fourth completion: left out of the weighted sum.
        return [None if i % 4 == 3 else float(n) for i, n in enumerate(completion_length)]

    rows = []
    trainer = ranktune.GRPOTrainer(fresh_model(), reward_funcs=[longer_is_better, "format"],
                                   args=small_config(tmp_path, reward_weights=[0.1, 1.0]), train_dataset=data,
                                   callbacks=[rows.append], progress_bar=False)
    out = trainer.train()
    assert out.status == "completed" and out.global_step == 2
    assert calls and all(c[:3] == (8, 8, 8) for c in calls) and calls[0][3].startswith("What is")
    assert [r["step"] for r in rows] == [1, 2]
    assert {"reward", "rewards/format/mean", "rewards/longer_is_better/mean", "frac_reward_zero_std"} <= set(rows[0])
    assert 1 <= rows[0]["rewards/longer_is_better/mean"] <= 6
    assert out.metrics["train_reward"] == rows[-1]["reward"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["reward_funcs"] == ["format", "longer_is_better"] and summary["reward_weights"] == [0.1, 1.0]
    assert isinstance(trainer.model, ranktune.PeftModel)


def test_a_failing_reward_function_is_named(tmp_path):
    data = ranktune.gsm8k.load(need(GRPO_DATA) / "grpo.jsonl", limit=8)

    def broken(prompts, completions, **kwargs):
        raise ValueError("no score today")

    trainer = ranktune.GRPOTrainer(fresh_model(), reward_funcs=broken, args=small_config(tmp_path),
                                   train_dataset=data, progress_bar=False)
    with pytest.raises(ranktune.Error, match="reward function 'broken' raised ValueError: no score today"):
        trainer.train()
    with pytest.raises(TypeError, match="reward_funcs"):
        ranktune.GRPOTrainer(fresh_model(), reward_funcs=[42], args=small_config(tmp_path), train_dataset=data)
