"""ranktune.torch: LoRA/DoRA on ordinary torch.nn.Modules run by ranktune's C++ peft::Linear,
checked against a pure-PyTorch LoRA/DoRA written here from the formulas (docs/adapters.md):

    LoRA:  y = W x + b + s · B A drop(x)
    DoRA:  y = m ⊙ (W x + s · B A x) / sg(‖W + s·B A‖_row) + b
           (with dropout: y = W x + b + (m/n − 1) ⊙ W drop(x) + (m/n) ⊙ s · B A drop(x))
"""

import json
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import ranktune
from ranktune.torch import LoraLinear


class Net(nn.Module):
    """A small hand-written model: two adaptable projections around a nonlinearity, a head."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.fc1 = nn.Linear(12, 10, dtype=dtype)
        self.fc2 = nn.Linear(10, 8, bias=False, dtype=dtype)
        self.lm_head = nn.Linear(8, 5, dtype=dtype)

    def forward(self, x):
        return self.lm_head(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def reference_forward(net, adapters, x, dropout_masks=None):
    """The same network computed from the formulas in plain PyTorch. `adapters`: layer name ->
    dict(A, B, m or None, s); the tensors are leaves whose gradients the test compares."""

    def adapted(name, layer, h):
        W, b = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
        a = adapters[name]
        hd = h if dropout_masks is None else h * dropout_masks[name]
        if a["m"] is None:
            return F.linear(h, W, b) + a["s"] * F.linear(F.linear(hd, a["A"]), a["B"])
        n = torch.linalg.norm(W + a["s"] * a["B"] @ a["A"], dim=1).detach()  # DoRA §4.3: a constant
        c = a["m"] / n
        out = F.linear(h, W, b)
        return out + (c - 1) * F.linear(hd, W) + c * a["s"] * F.linear(F.linear(hd, a["A"]), a["B"])

    h = torch.tanh(adapted("fc1", net.fc1.base_layer, x))
    h = torch.tanh(adapted("fc2", net.fc2.base_layer, h))
    return F.linear(h, net.lm_head.weight.detach(), net.lm_head.bias.detach())


def randomize_adapters(net, seed=1):
    """B is zero at init (so A gets no gradient): give every adapter weight a random value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ranktune.torch.adapter_parameters(net):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * 0.5
                    + (1.0 if "magnitude" in name else 0.0))


def reference_adapters(net, names=("fc1", "fc2")):
    out = {}
    for name in names:
        layer = getattr(net, name)
        m = layer.lora_magnitude_vector["default"].weight if "default" in layer.lora_magnitude_vector else None
        out[name] = {
            "A": layer.lora_A["default"].weight.detach().clone().requires_grad_(True),
            "B": layer.lora_B["default"].weight.detach().clone().requires_grad_(True),
            "m": None if m is None else m.detach().clone().requires_grad_(True),
            "s": layer.scaling["default"],
        }
    return out


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["fp32", "fp64"])
@pytest.mark.parametrize("use_rslora", [False, True], ids=["alpha_over_r", "rslora"])
def test_inject_gradients_match_pure_pytorch(use_dora, dtype, tol, use_rslora):
    torch.manual_seed(0)
    net = Net(dtype)
    config = ranktune.LoraConfig(r=3, lora_alpha=6, target_modules=["fc1", "fc2"], use_dora=use_dora,
                                 use_rslora=use_rslora)
    ranktune.torch.inject(net, config)
    randomize_adapters(net)
    ref = reference_adapters(net)

    x = torch.randn(4, 7, 12, dtype=dtype)
    x_ours = x.clone().requires_grad_(True)
    x_ref = x.clone().requires_grad_(True)
    target = torch.randn(4, 7, 5, dtype=dtype)

    y = net(x_ours)
    y_ref = reference_forward(net, ref, x_ref)
    assert torch.allclose(y, y_ref, atol=tol, rtol=0), (y - y_ref).abs().max()
    ((y - target) ** 2).mean().backward()
    ((y_ref - target) ** 2).mean().backward()

    for name in ("fc1", "fc2"):
        layer = getattr(net, name)
        pairs = [(layer.lora_A["default"].weight.grad, ref[name]["A"].grad),
                 (layer.lora_B["default"].weight.grad, ref[name]["B"].grad)]
        if use_dora:
            pairs.append((layer.lora_magnitude_vector["default"].weight.grad, ref[name]["m"].grad))
        for ours, theirs in pairs:
            assert ours is not None and ours.dtype == dtype
            assert torch.allclose(ours, theirs, atol=tol, rtol=0), (ours - theirs).abs().max()
        # The frozen base never gets a gradient.
        assert layer.base_layer.weight.grad is None
    assert torch.allclose(x_ours.grad, x_ref.grad, atol=tol, rtol=0)


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_dropout_path_matches_pure_pytorch_with_the_same_masks(use_dora):
    torch.manual_seed(0)
    net = Net(torch.float64)
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, lora_alpha=4, lora_dropout=0.3, target_modules=["fc1", "fc2"],
                                                   use_dora=use_dora))
    randomize_adapters(net)
    ref = reference_adapters(net)
    net.train()
    x = torch.randn(3, 12, dtype=torch.float64)

    # The C++ layer draws its dropout masks from torch's generator, one per layer in forward
    # order (fc1's input [3, 12], then fc2's [3, 10]): replay the same draws for the reference.
    torch.manual_seed(11)
    masks = {"fc1": F.dropout(torch.ones(3, 12, dtype=torch.float64), 0.3),
             "fc2": F.dropout(torch.ones(3, 10, dtype=torch.float64), 0.3)}
    torch.manual_seed(11)
    y = net(x)
    y.sum().backward()
    y_ref = reference_forward(net, ref, x, dropout_masks=masks)
    y_ref.sum().backward()
    assert torch.allclose(y, y_ref, atol=1e-10, rtol=0)
    for name in ("fc1", "fc2"):
        layer = getattr(net, name)
        assert torch.allclose(layer.lora_A["default"].weight.grad, ref[name]["A"].grad, atol=1e-10, rtol=0)
        assert torch.allclose(layer.lora_B["default"].weight.grad, ref[name]["B"].grad, atol=1e-10, rtol=0)
        if use_dora:
            assert torch.allclose(layer.lora_magnitude_vector["default"].weight.grad, ref[name]["m"].grad,
                                  atol=1e-10, rtol=0)
    # In eval mode dropout is off: the output is deterministic.
    net.eval()
    assert torch.equal(net(x), net(x))


def test_new_adapter_is_initialised_by_the_cpp_layer_as_peft_does():
    torch.manual_seed(3)
    net = Net()
    w = net.fc1.weight.detach().clone()
    torch.manual_seed(7)
    ranktune.torch.inject(net, ranktune.LoraConfig(r=4, lora_alpha=8, target_modules=["fc1"], use_dora=True))
    layer = net.fc1
    assert isinstance(layer, LoraLinear) and isinstance(layer.base_layer, nn.Linear)
    # PEFT's distribution: A kaiming-uniform(a=sqrt(5)), i.e. U(±1/sqrt(in)), B zeros. The C++
    # layer draws A once from torch's generator (as for ranktune's own models; PEFT draws twice
    # more before it, so the values differ from PEFT's for the same seed).
    torch.manual_seed(7)
    a = torch.empty(4, 12).uniform_(-1 / math.sqrt(12), 1 / math.sqrt(12))
    assert torch.equal(layer.lora_A["default"].weight, a)
    assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    bound = 1 / math.sqrt(12)
    assert layer.lora_A["default"].weight.abs().max() <= bound
    assert torch.allclose(layer.lora_magnitude_vector["default"].weight, torch.linalg.norm(w, dim=1), atol=1e-6)
    assert layer.scaling["default"] == 2.0
    # A new adapter starts as the base layer.
    x = torch.randn(2, 12)
    assert torch.allclose(layer(x), layer.base_layer(x), atol=1e-6)


def test_inject_freezes_everything_but_the_adapters_with_peft_names():
    net = Net()
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, target_modules="all-linear", use_dora=True))
    trainable = sorted(n for n, p in net.named_parameters() if p.requires_grad)
    assert trainable == [
        "fc1.lora_A.default.weight", "fc1.lora_B.default.weight", "fc1.lora_magnitude_vector.default.weight",
        "fc2.lora_A.default.weight", "fc2.lora_B.default.weight", "fc2.lora_magnitude_vector.default.weight",
    ]  # "all-linear" leaves out the output head (lm_head), as PEFT does
    assert isinstance(net.lm_head, nn.Linear) and not net.lm_head.weight.requires_grad
    assert all(isinstance(p, nn.Parameter) for _, p in ranktune.torch.adapter_parameters(net))


def test_target_matching_follows_peft_rules():
    class Deep(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Module()
            self.body.layers = nn.ModuleList([nn.ModuleDict({"q": nn.Linear(4, 4), "v": nn.Linear(4, 4)})
                                              for _ in range(3)])

    def adapted_names(m):
        return [n for n, sub in m.named_modules() if isinstance(sub, LoraLinear)]

    # Suffix matches are filtered by layer index (the number after "<name>.", as PEFT finds it).
    deep = ranktune.torch.inject(Deep(), ranktune.LoraConfig(r=2, target_modules=["q"], layers_to_transform=[0, 2]))
    assert adapted_names(deep) == ["body.layers.0.q", "body.layers.2.q"]
    # A regex must match the whole name; exclude_modules wins.
    deep = ranktune.torch.inject(Deep(), ranktune.LoraConfig(r=2, target_modules=r"body\.layers\.[01]\.(q|v)",
                                                             exclude_modules=["layers.1.v"]))
    assert adapted_names(deep) == ["body.layers.0.q", "body.layers.0.v", "body.layers.1.q"]
    # rank_pattern / alpha_pattern keys match names ending in them.
    deep = ranktune.torch.inject(Deep(), ranktune.LoraConfig(r=2, target_modules=["q", "v"], rank_pattern={"v": 3},
                                                             alpha_pattern={"layers.0.q": 16}))
    layers = deep.body.layers
    assert layers[0]["q"].r["default"] == 2 and layers[0]["q"].lora_alpha["default"] == 16
    assert layers[1]["v"].r["default"] == 3 and layers[1]["v"].lora_alpha["default"] == 8

    with pytest.raises(ValueError, match="matched no adaptable linear layer.*body.layers.0.q"):
        ranktune.torch.inject(Deep(), ranktune.LoraConfig(r=2, target_modules=["k_proj"]))


def test_second_adapter_adds_its_update_and_set_adapter_switches():
    torch.manual_seed(0)
    net = Net()
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, target_modules=["fc1"]))
    ranktune.torch.inject(net, ranktune.LoraConfig(r=3, target_modules=["fc1"], use_dora=True), adapter_name="other")
    randomize_adapters(net)
    layer = net.fc1
    assert layer.active_adapters == ["default", "other"]
    x = torch.randn(2, 12)
    both = layer(x)
    ranktune.torch.set_adapter(net, "default")
    only_default = layer(x)
    lora_delta = layer.scaling["default"] * F.linear(F.linear(x, layer.lora_A["default"].weight),
                                                     layer.lora_B["default"].weight)
    assert torch.allclose(only_default, layer.base_layer(x) + lora_delta, atol=1e-6)
    assert not torch.allclose(both, only_default)
    assert not layer.lora_A["other"].weight.requires_grad and layer.lora_A["default"].weight.requires_grad
    with pytest.raises(ranktune.Error, match="no adapter 'missing'"):
        ranktune.torch.set_adapter(net, "missing")


def test_save_adapter_writes_peft_files_and_load_adapter_restores_outputs(tmp_path):
    torch.manual_seed(0)
    net = Net()
    base_state = {k: v.clone() for k, v in net.state_dict().items()}
    config = ranktune.LoraConfig(r=2, lora_alpha=4, target_modules=["fc1", "fc2"], use_dora=True, bias="lora_only")
    ranktune.torch.inject(net, config)
    randomize_adapters(net)
    with torch.no_grad():
        net.fc1.base_layer.bias.add_(0.25)  # a trained bias is saved with the adapter (bias="lora_only")
    ranktune.torch.save_adapter(net, tmp_path)

    tensors = ranktune.safetensors.load_file(tmp_path / "adapter_model.safetensors")
    assert sorted(k for k in tensors if "lora_" in k) == [
        "base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight",
        "base_model.model.fc1.lora_magnitude_vector",
        "base_model.model.fc2.lora_A.weight", "base_model.model.fc2.lora_B.weight",
        "base_model.model.fc2.lora_magnitude_vector",
    ]
    assert len(tensors) == 7  # and fc1's trained bias (fc2 has none)
    written = json.loads((tmp_path / "adapter_config.json").read_text())
    assert written["peft_type"] == "LORA" and written["inference_mode"] is True and written["use_dora"] is True
    assert written["r"] == 2 and written["lora_alpha"] == 4

    fresh = Net()
    fresh.load_state_dict(base_state)
    ranktune.torch.load_adapter(fresh, tmp_path)
    x = torch.randn(3, 12)
    with torch.no_grad():
        assert torch.equal(fresh(x), net(x))
    assert not any(p.requires_grad for p in fresh.parameters())  # frozen unless is_trainable

    # A file for another model is refused with every problem listed, and the module is unchanged.
    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(12, 6)
            self.fc2 = nn.Linear(6, 8, bias=False)

    other = Other()
    with pytest.raises(ValueError, match="wrong shape"):
        ranktune.torch.load_adapter(other, tmp_path)
    assert isinstance(other.fc1, nn.Linear) and not isinstance(other.fc1, LoraLinear)


# PEFT names an adapted layer's trained bias `<module>.base_layer.bias` (its in-memory name) and
# any other bias `<module>.bias`. The C++ writer on this branch still writes `fc1.bias` for both;
# the interop branch's src/peft/adapter_io.cpp writes PEFT's keys. Strict: once that is merged this
# passes and the marker must go.
@pytest.mark.parametrize("bias", ["lora_only", "all"])
def test_trained_biases_are_saved_under_peft_keys(tmp_path, bias):
    net = Net()
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, target_modules=["fc2"], bias=bias))
    ranktune.torch.save_adapter(net, tmp_path)
    keys = sorted(k for k in ranktune.safetensors.load_file(tmp_path / "adapter_model.safetensors") if "lora_" not in k)
    # fc2 (adapted) has no bias; fc1 and lm_head are not adapted.
    assert keys == ([] if bias == "lora_only" else ["base_model.model.fc1.bias", "base_model.model.lm_head.bias"])
    net = Net()
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, target_modules=["fc1"], bias=bias))
    ranktune.torch.save_adapter(net, tmp_path)
    keys = sorted(k for k in ranktune.safetensors.load_file(tmp_path / "adapter_model.safetensors") if "lora_" not in k)
    assert keys == (["base_model.model.fc1.base_layer.bias"] if bias == "lora_only" else
                    ["base_model.model.fc1.base_layer.bias", "base_model.model.lm_head.bias"])


def test_pissa_rewrites_the_shared_base_weight_and_starts_at_the_base_output():
    torch.manual_seed(0)
    net = Net()
    x = torch.randn(3, 12)
    before_out = net(x)
    before_w = net.fc1.weight.detach().clone()
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, lora_alpha=4, target_modules=["fc1"], init_lora_weights="pissa"))
    layer = net.fc1
    # The nn.Linear's own weight now holds the residual W - s·B A (the C++ init wrote it in place).
    residual = before_w - layer.get_delta_weight("default")
    assert torch.allclose(layer.base_layer.weight, residual, atol=1e-5, rtol=0)
    assert not torch.allclose(layer.base_layer.weight, before_w, atol=1e-3, rtol=0)
    assert torch.allclose(net(x), before_out, atol=1e-5, rtol=0)


def test_bad_config_is_a_clear_error():
    with pytest.raises(TypeError, match="LoraConfig"):
        ranktune.torch.inject(Net(), {"r": 2})
    with pytest.raises(ValueError, match="target_modules is not set"):
        ranktune.torch.inject(Net(), ranktune.LoraConfig(r=2))
