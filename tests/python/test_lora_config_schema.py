"""ranktune.LoraConfig is the C++ field table seen from Python: the same fields in the same order,
the same defaults and help, the same JSON, and PEFT 0.12's defaults (checked against the real PEFT
when ../shared/tools/hfref is installed)."""

import dataclasses
import json
import os
import pathlib
import subprocess

import pytest

import ranktune
from conftest import QUICKSTART_MODEL, need
from ranktune import _core

FIELDS = _core.lora_config_fields()
HFREF = pathlib.Path(os.environ.get("RANKTUNE_HFREF", pathlib.Path.home() / "hfref"))


def test_the_dataclass_has_the_tables_fields_in_its_order():
    assert [f.name for f in dataclasses.fields(ranktune.LoraConfig)] == [f["name"] for f in FIELDS]


@pytest.mark.parametrize("spec", FIELDS, ids=[f["name"] for f in FIELDS])
def test_default_and_help_are_the_cpp_ones(spec):
    field = {f.name: f for f in dataclasses.fields(ranktune.LoraConfig)}[spec["name"]]
    default = json.loads(spec["default_json"])
    assert getattr(ranktune.LoraConfig(), spec["name"]) == default
    assert field.metadata["help"] == spec["help"]
    assert spec["name"] in ranktune.LoraConfig.__doc__
    # What the dataclass writes for the default is what the C++ codec writes.
    written = ranktune.LoraConfig().to_dict()
    if spec["written"] == "always":
        assert written[spec["name"]] == default
    else:
        assert spec["written"] == "when_set" and spec["name"] not in written


def test_recipe_keys_are_the_tables():
    args = ranktune.TrainingArguments()
    adapter = args.to_dict()["adapter"]
    for spec in FIELDS:
        if spec["recipe_key"]:
            assert spec["recipe_key"] == "adapter." + spec["name"]
            assert adapter[spec["name"]] == json.loads(spec["default_json"]), spec["name"]
        else:
            assert spec["name"] not in adapter and spec["outside_recipes"], spec["name"]


def test_fields_of_later_peft_versions_are_written_only_when_set(tmp_path):
    assert "ensure_weight_tying" not in ranktune.LoraConfig(target_modules=["q_proj"]).to_dict()
    config = ranktune.LoraConfig(target_modules=["q_proj"], ensure_weight_tying=True, exclude_modules=["lm_head"])
    written = config.to_dict()
    assert written["ensure_weight_tying"] is True and written["exclude_modules"] == ["lm_head"]
    config.save_pretrained(tmp_path)
    assert ranktune.LoraConfig.from_pretrained(tmp_path) == config
    # The dataclass writes exactly what the C++ writer does (one codec).
    assert config.to_json_string() == _core.lora_config_normalize(config.to_json_string())


def test_use_dora_in_a_recipe_is_the_dataclass_field():
    dora = ranktune.TrainingArguments(**{"adapter.use_dora": True, "adapter.target_modules": "all-linear"})
    shorthand = ranktune.TrainingArguments(method="dora", **{"adapter.target_modules": "all-linear"})
    assert dora.use_dora and shorthand.use_dora and shorthand.method == "lora"
    with pytest.raises(ranktune.Error, match="adapter.method.*is dora.*adapter.use_dora is false"):
        ranktune.TrainingArguments(method="dora", use_dora=False)


def test_a_trainer_attaching_an_adapter_needs_target_modules():
    model = ranktune.AutoModelForCausalLM.from_pretrained(need(QUICKSTART_MODEL), init_seed=0)
    tokenizer = ranktune.AutoTokenizer.from_pretrained(QUICKSTART_MODEL)
    examples = [{"question": "1 + 1?", "answer": "1 + 1 = 2\n#### 2"}] * 4
    with pytest.raises(ranktune.Error, match="'adapter.target_modules': is not set"):
        ranktune.Trainer(model, tokenizer, ranktune.TrainingArguments(validation_size=0), train_dataset=examples,
                         progress_bar=False).train()


def _peft_defaults():
    python = HFREF / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python} is absent (../shared/tools/hfref builds it)")
    script = ("import dataclasses, json; from peft import LoraConfig\n"
              "out = {}\n"
              "for f in dataclasses.fields(LoraConfig):\n"
              "    d = f.default if f.default is not dataclasses.MISSING else f.default_factory()\n"
              "    out[f.name] = d if isinstance(d, (type(None), bool, int, float, str, list, dict)) else repr(d)\n"
              "print(json.dumps(out))")
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_defaults_are_real_pefts():
    peft = _peft_defaults()
    shared = [spec for spec in FIELDS if spec["name"] in peft]
    assert len(shared) >= 17  # PEFT 0.12 has every field but the later exclude_modules and ensure_weight_tying
    for spec in shared:
        assert json.loads(spec["default_json"]) == peft[spec["name"]], spec["name"]
    for spec in FIELDS:
        if spec["name"] not in peft:
            assert spec["written"] == "when_set", f"{spec['name']} is not in PEFT 0.12, so it must not be written by default"
