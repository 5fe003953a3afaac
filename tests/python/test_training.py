"""TrainingArguments (recipe keys validated by the C++ RunConfig) and the Trainer: callbacks,
evaluation, Ctrl-C, resume. Runs on the repository's quickstart model (random weights from a
seed) so it needs nothing from ../shared."""

import json
import os
import signal
import sys
import threading
import time
import types

import pytest
import torch

import ranktune
from conftest import QUICKSTART_DATA, QUICKSTART_MODEL, ROOT, need

SMALL = {"data.max_length": 160, "eval.max_new_tokens": 24, "eval.batch_size": 4}
# The adapter these runs have always trained (recipes now start from PEFT's LoraConfig defaults).
ADAPTER = {"adapter.r": 16, "adapter.lora_alpha": 32, "adapter.lora_dropout": 0.05, "adapter.target_modules": "all-linear"}


@pytest.fixture(scope="module")
def tokenizer():
    return ranktune.AutoTokenizer.from_pretrained(need(QUICKSTART_MODEL))


@pytest.fixture(scope="module")
def data():
    train = ranktune.gsm8k.load(need(QUICKSTART_DATA) / "train.jsonl", limit=48)
    test = ranktune.gsm8k.load(QUICKSTART_DATA / "test.jsonl", limit=4)
    return train, test


def fresh_model():
    return ranktune.AutoModelForCausalLM.from_pretrained(need(QUICKSTART_MODEL), init_seed=0)


# ---- TrainingArguments ----------------------------------------------------------------------------------


def test_arguments_accept_short_dotted_and_transformers_names(tmp_path):
    args = ranktune.TrainingArguments(output_dir=tmp_path, max_steps=7, learning_rate=1e-3, r=4, template="gsm8k-cot",
                                      per_device_train_batch_size=2, overrides=["eval.limit=3"],
                                      **{"adapter.target_modules": ["q_proj", "v_proj"]})
    assert args.output_dir == str(tmp_path) and args.max_steps == 7 and args.lr == 1e-3
    assert args.learning_rate == 1e-3 and args.batch_size == 2  # "batch_size" is train.batch_size
    assert args.to_dict()["adapter"]["target_modules"] == ["q_proj", "v_proj"]
    assert args.to_dict()["eval"]["limit"] == 3 and args.r == 4
    assert "lr: 0.001" in args.to_yaml()


def test_arguments_errors_name_the_key():
    with pytest.raises(TypeError, match="'lrr'.*did you mean 'lr'"):
        ranktune.TrainingArguments(lrr=1e-4)
    with pytest.raises(TypeError, match="ambiguous.*data.limit.*eval.limit"):
        ranktune.TrainingArguments(limit=3)
    with pytest.raises(ranktune.Error, match="train.lrr.*did you mean 'train.lr'"):
        ranktune.TrainingArguments(**{"train.lrr": 1e-4})
    with pytest.raises(ranktune.Error, match="train.max_steps.*integer"):
        ranktune.TrainingArguments(max_steps=2.5)
    with pytest.raises(ranktune.Error, match="train.schedule.*allowed: constant, linear, cosine"):
        ranktune.TrainingArguments(lr_scheduler_type="exponential")
    with pytest.raises(ranktune.Error, match="adapter.r.*positive"):
        ranktune.TrainingArguments(r=0)


def test_arguments_from_a_recipe_with_overrides(tmp_path):
    recipe = ROOT / "examples" / "gsm8k" / "quickstart.yaml"
    args = ranktune.TrainingArguments.from_yaml(recipe, overrides=["train.max_steps=5"], lr=1e-2)
    assert args.max_steps == 5 and args.lr == 1e-2 and args.to_dict()["adapter"]["r"] == 32
    assert args.to_dict()["model"]["path"] == "examples/gsm8k/quickstart/model"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_step: 3\n")
    with pytest.raises(ranktune.Error, match=r"bad.yaml:2.*max_step.*did you mean"):
        ranktune.TrainingArguments.from_yaml(bad)


# ---- Trainer --------------------------------------------------------------------------------------------


def test_trainer_trains_evaluates_and_writes_the_run(tmp_path, tokenizer, data):
    train, test = data
    rows = []
    args = ranktune.TrainingArguments(output_dir=tmp_path, max_steps=6, batch_size=8, lr=3e-3, log_every=2,
                                      **{**ADAPTER, **SMALL, "adapter.r": 8, "adapter.lora_alpha": 16})
    trainer = ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test,
                               callbacks=[rows.append], progress_bar=False)
    result = trainer.train()
    assert result.status == "completed" and result.global_step == 6
    assert result.training_loss < result.metrics["train_first_loss"]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [2, 4, 6]
    assert {"loss", "lr", "grad_norm", "tokens_per_second", "epoch"} <= set(train_rows[0])
    assert "eval_accuracy_strict" in rows[-1] and "eval_loss" in rows[-1]
    assert trainer.log_history == rows
    assert isinstance(trainer.model, ranktune.PeftModel)  # the recipe's adapter (LoRA) was attached
    assert trainer.model.peft_config["default"].r == 8
    for name in ("adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "summary.json", "config.yaml",
                 "predictions.jsonl", "training-curve.svg"):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["validation_examples"] == len(test)

    metrics = trainer.evaluate()
    assert set(metrics) >= {"eval_loss", "eval_accuracy_strict", "eval_accuracy_flexible", "eval_format_rate"}
    assert metrics["eval_loss"] == pytest.approx(rows[-1]["eval_loss"], rel=1e-6)

    # The saved adapter reproduces the trained model (in eval mode: the recipe's lora_dropout is 0.05).
    reloaded = ranktune.PeftModel.from_pretrained(fresh_model(), tmp_path)
    trainer.model.eval()
    ids = torch.tensor([tokenizer.encode("Q: 2 + 2?")])
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, trainer.model(ids).logits)


def test_trainer_with_a_peft_model_and_a_jsonl_path(tmp_path, tokenizer):
    model = ranktune.get_peft_model(fresh_model(), ranktune.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                       use_dora=True))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    args = ranktune.TrainingArguments(output_dir=tmp_path, max_steps=3, batch_size=4, validation_size=4,
                                      **{**SMALL, "eval.max_new_tokens": 0, "data.limit": 24})
    trainer = ranktune.Trainer(model, tokenizer, args, train_dataset=QUICKSTART_DATA / "train.jsonl",
                               progress_bar=False)
    assert trainer.train().global_step == 3
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)  # the given adapter trained in place
    assert json.loads((tmp_path / "adapter_config.json").read_text())["use_dora"] is True


def test_trainer_needs_data_and_a_model(tokenizer):
    with pytest.raises(ranktune.Error, match="train_dataset"):
        ranktune.Trainer(fresh_model(), tokenizer, ranktune.TrainingArguments()).train()
    with pytest.raises(ranktune.Error, match="needs a model"):
        ranktune.Trainer(None, tokenizer, ranktune.TrainingArguments(), train_dataset=[]).train()
    with pytest.raises(ranktune.Error, match="validation_size=200 would hold out all"):
        ranktune.Trainer(fresh_model(), tokenizer, ranktune.TrainingArguments(),
                         train_dataset=[{"question": "q", "answer": "a\n#### 1"}] * 10).train()


def test_ctrl_c_saves_a_checkpoint_then_raises_keyboard_interrupt(tmp_path, tokenizer, data):
    train, test = data
    args = ranktune.TrainingArguments(output_dir=tmp_path, max_steps=40, batch_size=2, log_every=1, save_every=0,
                                      **{**ADAPTER, **SMALL, "eval.max_new_tokens": 0})
    started = threading.Event()

    def send_sigint():
        started.wait(60)
        os.kill(os.getpid(), signal.SIGINT)  # from another thread, while C++ trains without the GIL

    killer = threading.Thread(target=send_sigint)
    killer.start()
    trainer = ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test,
                               callbacks=[lambda logs: started.set()], progress_bar=False)
    with pytest.raises(KeyboardInterrupt, match="checkpoint was saved"):
        trainer.train()
    killer.join()
    checkpoints = [p for p in tmp_path.iterdir() if p.name.startswith("checkpoint-")]
    assert len(checkpoints) == 1 and (checkpoints[0] / "adapter_model.safetensors").exists()
    step = int(checkpoints[0].name.split("-")[1])
    assert 1 <= step < 40
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "interrupted"
    # Python's own handler is back: the next Ctrl-C is an ordinary KeyboardInterrupt.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    # The run resumes from that checkpoint and continues to the end.
    rows = []
    resumed = ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test,
                               callbacks=[rows.append], progress_bar=False)
    assert resumed.train(resume_from_checkpoint=True).global_step == 40
    assert rows[0]["step"] == step + 1


def test_a_finished_run_extends_and_a_reused_directory_is_refused(tmp_path, tokenizer, data):
    train, test = data
    args = ranktune.TrainingArguments(output_dir=tmp_path, max_steps=3, batch_size=4, log_every=1, save_every=3,
                                      **{**ADAPTER, **SMALL, "eval.max_new_tokens": 0})
    first = ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test, progress_bar=False)
    assert first.train().global_step == 3
    # A fresh run into the same directory is refused, naming both ways out; nothing there changes.
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ranktune.Error, match="resume_from=latest.*overwrite_output_dir=true"):
        ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test,
                         progress_bar=False).train()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # Resumed with a larger max_steps, it trains on to the new total; the summary covers all 6 steps.
    longer = ranktune.Trainer(fresh_model(), tokenizer, args.replace(max_steps=6), train_dataset=train,
                              eval_dataset=test, progress_bar=False)
    assert longer.train(resume_from_checkpoint=True).global_step == 6
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["total_steps"] == 6 and summary["first_loss"] > 0


def test_callback_errors_stop_the_run_and_are_raised(tmp_path, tokenizer, data):
    train, test = data
    args = ranktune.TrainingArguments(output_dir=tmp_path, max_steps=50, batch_size=2, log_every=1,
                                      **{**ADAPTER, **SMALL, "eval.max_new_tokens": 0})

    def failing(logs):
        if logs["step"] == 2:
            raise RuntimeError("callback failed")

    trainer = ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test,
                               callbacks=[failing], progress_bar=False)
    with pytest.raises(RuntimeError, match="callback failed"):
        trainer.train()
    assert (tmp_path / "checkpoint-2").is_dir()

    # A callback returning True stops the run without an exception.
    stopper = ranktune.Trainer(fresh_model(), tokenizer, args.replace(output_dir=tmp_path / "stop"),
                               train_dataset=train, eval_dataset=test,
                               callbacks=[lambda logs: logs["step"] >= 3], progress_bar=False)
    result = stopper.train()
    assert result.status == "interrupted" and result.global_step == 3


def test_trainer_runs_a_recipe_path_and_loads_its_model(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipe paths are relative to the working directory, as for the CLI
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((ROOT / "examples" / "gsm8k" / "quickstart.yaml").read_text())
    args = ranktune.TrainingArguments.from_yaml(recipe, overrides=["train.max_steps=2", "data.limit=40",
                                                                   "data.validation_size=8", "eval.max_new_tokens=0"],
                                                output_dir=tmp_path / "run", log_every=1, save_every=0)
    trainer = ranktune.Trainer(args=args, progress_bar=False)  # model, tokenizer and data from the recipe
    result = trainer.train()
    assert result.global_step == 2 and isinstance(trainer.model, ranktune.PeftModel)
    assert trainer.model.peft_config["default"].r == 32  # the recipe's adapter
    assert (tmp_path / "run" / "adapter_model.safetensors").exists()
    # A recipe path works in place of TrainingArguments too.
    assert isinstance(ranktune.Trainer(args=str(recipe)).args, ranktune.TrainingArguments)


def test_tqdm_shows_progress_when_installed(tmp_path, monkeypatch, tokenizer, data):
    # python3-tqdm may be absent: a stand-in with tqdm's interface checks how the trainer drives it.
    bars = []

    class FakeTqdm:
        def __init__(self, total=None, **kwargs):
            self.total, self.n, self.postfix, self.closed = total, 0, {}, False
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def set_postfix(self, **kwargs):
            self.postfix = kwargs

        def close(self):
            self.closed = True

    package, auto = types.ModuleType("tqdm"), types.ModuleType("tqdm.auto")
    auto.tqdm, package.auto = FakeTqdm, auto
    monkeypatch.setitem(sys.modules, "tqdm", package)
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)

    train, test = data
    args = ranktune.TrainingArguments(output_dir=tmp_path / "run", max_steps=4, batch_size=4, log_every=2,
                                      **{**ADAPTER, **SMALL, "eval.max_new_tokens": 0})
    ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test).train()
    bar = bars[-1]
    assert bar.total == 4 and bar.n == 4 and bar.closed and "loss" in bar.postfix


def test_ctrl_c_stops_evaluation_between_tokens(tmp_path, tokenizer, data):
    import _thread
    train, test = data
    args = ranktune.TrainingArguments(output_dir=tmp_path, max_steps=1, batch_size=2,
                                      **{**ADAPTER, **SMALL, "eval.max_new_tokens": 96})
    trainer = ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test,
                               progress_bar=False)
    trainer.train()
    start = time.perf_counter()
    full = trainer.evaluate()
    whole = time.perf_counter() - start
    timer = threading.Timer(whole / 10, _thread.interrupt_main)
    timer.start()
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        trainer.evaluate()
    stopped = time.perf_counter() - start
    timer.join()
    assert stopped < whole * 0.8, (stopped, whole)
    assert trainer.evaluate() == full  # nothing left half-done


@pytest.mark.parametrize("name", ["metrics.jsonl", "adapter_model.safetensors", "training-curve.svg", "summary.json"])
def test_a_failed_write_of_a_run_file_names_it_and_keeps_the_checkpoint(tmp_path, tokenizer, data, name):
    # The file's path is taken by a directory while the run goes on (as root, where permissions do
    # not deny): the write fails as a full disk or a read-only file system would make it fail.
    train, test = data
    args = ranktune.TrainingArguments(output_dir=tmp_path, max_steps=3, batch_size=4, log_every=1, save_every=2,
                                      **{**ADAPTER, **SMALL, "eval.max_new_tokens": 0})

    def block(logs):
        final_row = "eval_loss" in logs
        if (name == "metrics.jsonl" and logs["step"] == 2) or (name == "adapter_model.safetensors" and logs["step"] == 3) \
                or (name in ("training-curve.svg", "summary.json") and final_row):
            target = tmp_path / name
            if target.exists():
                target.unlink()
            target.mkdir()

    trainer = ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test,
                               callbacks=[block], progress_bar=False)
    with pytest.raises(ranktune.Error, match=f"{name}.*Is a directory"):
        trainer.train()
    assert (tmp_path / "checkpoint-2" / "adapter_model.safetensors").is_file()  # the last good checkpoint
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_a_run_directory_that_cannot_be_made_is_a_ranktune_error(tmp_path, tokenizer, data):
    train, test = data
    (tmp_path / "a-file").write_text("")
    args = ranktune.TrainingArguments(output_dir=tmp_path / "a-file" / "run", max_steps=1, batch_size=4,
                                      **{**ADAPTER, **SMALL, "eval.max_new_tokens": 0})
    trainer = ranktune.Trainer(fresh_model(), tokenizer, args, train_dataset=train, eval_dataset=test,
                               progress_bar=False)
    with pytest.raises(ranktune.Error, match="train.output_dir.*cannot create the run directory: Not a directory"):
        trainer.train()
