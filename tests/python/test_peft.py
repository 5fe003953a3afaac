"""LoraConfig and PeftModel: PEFT's names and defaults, train -> save -> reload parity, merging,
several adapters."""

import dataclasses
import json
import pydoc

import pytest
import torch

import ranktune
from conftest import HF_TINY, need

IDS = torch.tensor([[1, 5, 17, 42, 99, 3, 250, 7], [1, 9, 8, 7, 6, 5, 4, 3]])

# PEFT 0.12's LoraConfig defaults for the fields ranktune implements.
PEFT_DEFAULTS = {
    "r": 8, "target_modules": None, "lora_alpha": 8, "lora_dropout": 0.0, "fan_in_fan_out": False, "bias": "none",
    "use_rslora": False, "modules_to_save": None, "init_lora_weights": True, "layers_to_transform": None,
    "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {}, "use_dora": False, "task_type": None,
    "inference_mode": False, "base_model_name_or_path": None, "revision": None,
}


def llama():
    return ranktune.AutoModelForCausalLM.from_pretrained(need(HF_TINY / "llama"))


def train_a_few_steps(model, steps=6, lr=1e-2):
    """A plain PyTorch loop with torch.optim.AdamW on the parameters ranktune returns."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(IDS, labels=IDS).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    model.eval()
    return losses


# ---- LoraConfig ---------------------------------------------------------------------------------------


def test_lora_config_has_peft_fields_and_defaults():
    config = ranktune.LoraConfig()
    for name, default in PEFT_DEFAULTS.items():
        assert getattr(config, name) == default, name
    assert config.peft_type == "LORA"
    names = [f.name for f in dataclasses.fields(ranktune.LoraConfig)]
    assert set(PEFT_DEFAULTS) <= set(names) and "exclude_modules" in names


def test_lora_config_rejects_unknown_keywords_and_invalid_values():
    with pytest.raises(TypeError, match="lora_rank"):
        ranktune.LoraConfig(lora_rank=8)
    with pytest.raises(ranktune.Error, match="'r'.*positive"):
        ranktune.LoraConfig(r=0)
    with pytest.raises(ValueError, match="lora_dropout"):
        ranktune.LoraConfig(lora_dropout=1.5)
    with pytest.raises(ValueError, match="bias.*none, all, lora_only"):
        ranktune.LoraConfig(bias="some")
    with pytest.raises(ValueError, match="init_lora_weights"):
        ranktune.LoraConfig(init_lora_weights="random")
    with pytest.raises(ValueError, match="layers_pattern"):
        ranktune.LoraConfig(target_modules=["q_proj"], layers_pattern="layers")


def test_help_lists_the_fields_with_defaults():
    text = pydoc.render_doc(ranktune.LoraConfig, renderer=pydoc.plaintext)
    for fragment in ("r: int = 8", "lora_alpha: float = 8", "lora_dropout: float = 0.0", "use_dora: bool = False",
                     "init_lora_weights", "target_modules"):
        assert fragment in text, fragment


def test_lora_config_json_round_trip(tmp_path):
    config = ranktune.LoraConfig(r=16, lora_alpha=32, target_modules={"v_proj", "q_proj"}, use_dora=True,
                                 rank_pattern={"q_proj": 4}, layers_to_transform=1, task_type="CAUSAL_LM")
    assert config.target_modules == ["q_proj", "v_proj"]  # a set becomes a sorted list, as JSON needs
    config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "adapter_config.json").read_text())
    assert written["peft_type"] == "LORA" and written["r"] == 16 and written["use_dora"] is True
    again = ranktune.LoraConfig.from_pretrained(tmp_path)
    assert again == ranktune.LoraConfig.from_dict(written)
    assert again.r == 16 and again.rank_pattern == {"q_proj": 4} and again.layers_to_transform == [1]


# ---- PeftModel -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_train_save_reload_gives_identical_logits_and_merge_matches(tmp_path, use_dora):
    torch.manual_seed(0)
    config = ranktune.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", use_dora=use_dora)
    model = ranktune.get_peft_model(llama(), config)
    losses = train_a_few_steps(model)
    assert losses[-1] < losses[0]
    with torch.no_grad():
        trained = model(IDS).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_config.json").exists() and (tmp_path / "adapter_model.safetensors").exists()

    reloaded = ranktune.PeftModel.from_pretrained(llama(), tmp_path)
    with torch.no_grad():
        assert torch.equal(reloaded(IDS).logits, trained)
    merged = reloaded.merge_and_unload()
    assert isinstance(merged, ranktune.CausalLM)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        assert torch.allclose(merged(IDS).logits, trained, atol=1e-5, rtol=0)


def test_get_peft_model_trains_only_the_adapter(capsys):
    model = ranktune.get_peft_model(llama(), ranktune.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A.default." in n or ".lora_B.default." in n for n in trainable)
    assert all(("q_proj" in n) or ("v_proj" in n) for n in trainable)
    trainable_count, total = model.get_nb_trainable_parameters()
    assert trainable_count == sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.print_trainable_parameters()
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"trainable params: {trainable_count:,} || all params: {total:,} || trainable%: ")
    # The base model is adapted in place and still usable through the wrapper.
    assert model.config.model_type == "llama" and model.get_base_model() is model.base_model


def test_disable_adapter_context_gives_the_base_output():
    base = llama()
    with torch.no_grad():
        base_logits = base(IDS).logits
    model = ranktune.get_peft_model(base, ranktune.LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    with torch.no_grad():
        adapted = model(IDS).logits
        assert not torch.allclose(adapted, base_logits)
        with model.disable_adapter():
            assert torch.equal(model(IDS).logits, base_logits)
        assert torch.equal(model(IDS).logits, adapted)


def test_several_adapters_set_delete_and_weighted_combination(tmp_path):
    torch.manual_seed(0)
    model = ranktune.get_peft_model(llama(), ranktune.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                 init_lora_weights=False))
    model.add_adapter("second", ranktune.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    assert model.active_adapter == "default"  # add_adapter does not activate, as in PEFT
    with torch.no_grad():
        first = model(IDS).logits
        model.set_adapter("second")
        second = model(IDS).logits
    assert model.active_adapters == ["second"] and not torch.allclose(first, second)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".second." in n for n in trainable)

    model.add_weighted_adapter(["default", "second"], [0.5, 0.5], "mix", combination_type="cat")
    assert sorted(model.peft_config) == ["default", "mix", "second"]
    assert model.peft_config["mix"].r == 8
    model.save_pretrained(tmp_path)  # "default" at the top, the others in subdirectories
    assert (tmp_path / "adapter_model.safetensors").exists() and (tmp_path / "mix" / "adapter_config.json").exists()

    model.delete_adapter("second")
    assert model.active_adapters == ["default"]  # deleting the active one activates the first left
    with pytest.raises(ranktune.Error, match="second"):
        model.set_adapter("second")


def test_load_adapter_and_merge_unmerge(tmp_path):
    torch.manual_seed(1)
    model = ranktune.get_peft_model(llama(), ranktune.LoraConfig(r=2, target_modules=["o_proj"], init_lora_weights=False))
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        expected = model(IDS).logits
        model.merge_adapter()
        assert torch.allclose(model(IDS).logits, expected, atol=1e-5)
        model.unmerge_adapter()
        assert torch.allclose(model(IDS).logits, expected, atol=1e-6)

    other = ranktune.get_peft_model(llama(), ranktune.LoraConfig(r=2, target_modules=["q_proj"]))
    other.load_adapter(tmp_path, "loaded")
    other.set_adapter("loaded")
    with torch.no_grad():
        assert torch.equal(other(IDS).logits, expected)
    plain = other.unload()
    with torch.no_grad():
        assert torch.equal(plain(IDS).logits, llama()(IDS).logits)


def test_adapter_for_another_model_is_refused_with_every_problem(tmp_path):
    model = ranktune.get_peft_model(llama(), ranktune.LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path)
    config = json.loads((HF_TINY / "llama" / "config.json").read_text())
    config["hidden_size"] *= 2  # same names, other shapes
    wider = ranktune.AutoModelForCausalLM.from_config(config, seed=0)
    with pytest.raises(ranktune.Error, match="wrong shape"):
        ranktune.PeftModel.from_pretrained(wider, tmp_path)
    assert not any("lora_" in n for n, _ in wider.named_parameters())  # left unchanged


def test_gpt2_conv1d_layers_get_fan_in_fan_out_as_in_peft(tmp_path):
    gpt2 = lambda: ranktune.AutoModelForCausalLM.from_pretrained(need(HF_TINY / "gpt2"))  # noqa: E731
    with pytest.warns(UserWarning, match="fan_in_fan_out"):
        model = ranktune.get_peft_model(gpt2(), ranktune.LoraConfig(r=2, target_modules=["c_attn", "c_proj"],
                                                                    use_dora=True, init_lora_weights=False))
    assert model.peft_config["default"].fan_in_fan_out
    with torch.no_grad():
        expected = model(IDS).logits
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    with torch.no_grad():
        assert torch.equal(ranktune.PeftModel.from_pretrained(gpt2(), tmp_path)(IDS).logits, expected)
