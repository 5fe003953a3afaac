"""ranktune.torch over the C++ peft::Linear: the nn.Parameters are the C++ layer's own tensors,
GPT-2's Conv1D (weight [in, out]) is adapted with fan_in_fan_out, merging and disabling run in
C++, and modules_to_save trains a copy as PEFT does (a tied partner stays untouched)."""

import copy
import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import ranktune
from ranktune.torch import LoraLinear, ModulesToSaveWrapper
from test_torch_inject import Net, randomize_adapters


class Conv1D(nn.Module):
    """transformers' GPT-2 Conv1D, written here: `nf` outputs, weight [in, out], y = x W + b."""

    def __init__(self, nf, nx, dtype=torch.float64):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf, dtype=dtype) * 0.3)
        self.bias = nn.Parameter(torch.randn(nf, dtype=dtype) * 0.1)

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(x.shape[:-1] + (self.nf,))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = Conv1D(9, 6)
        self.c_proj = Conv1D(4, 9)

    def forward(self, x):
        return self.c_proj(torch.tanh(self.c_attn(x)))


def test_parameters_are_the_cpp_layers_tensors():
    torch.manual_seed(0)
    net = Net()
    base_weight = net.fc1.weight
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, target_modules=["fc1", "fc2"], use_dora=True))
    layer = net.fc1
    assert layer.base_layer.weight is base_weight and layer._layer.weight is base_weight
    A, B, m = layer._layer.adapter_weights("default")
    assert A is layer.lora_A["default"].weight and B is layer.lora_B["default"].weight
    assert m is layer.lora_magnitude_vector["default"].weight
    assert all(type(t) is nn.Parameter for t in (A, B, m))
    assert sorted(net.state_dict()) == [  # PEFT's in-memory names
        "fc1.base_layer.bias", "fc1.base_layer.weight", "fc1.lora_A.default.weight", "fc1.lora_B.default.weight",
        "fc1.lora_magnitude_vector.default.weight", "fc2.base_layer.weight", "fc2.lora_A.default.weight",
        "fc2.lora_B.default.weight", "fc2.lora_magnitude_vector.default.weight", "lm_head.bias", "lm_head.weight",
    ]

    # An optimizer over the Parameters trains what the C++ forward reads.
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5)
    x = torch.randn(4, 12)
    before = net(x).detach()
    net(x).square().sum().backward()
    assert B.grad is not None and base_weight.grad is None
    opt.step()
    assert torch.count_nonzero(B) > 0
    assert torch.allclose(layer.get_delta_weight("default"), layer.scaling["default"] * B.detach() @ A.detach(),
                          atol=1e-6)
    assert not torch.allclose(net(x), before)

    # load_state_dict copies into the same tensors: another module gets the same outputs.
    other = ranktune.torch.inject(Net(), ranktune.LoraConfig(r=2, target_modules=["fc1", "fc2"], use_dora=True))
    other.load_state_dict(net.state_dict())
    assert torch.equal(other(x), net(x))


def test_lora_linear_works_on_its_own():
    torch.manual_seed(0)
    layer = LoraLinear(nn.Linear(6, 4, dtype=torch.float64))
    layer.update_layer("a", r=2, lora_alpha=4, use_rslora=True, use_dora=False)
    assert layer.r == {"a": 2} and layer.scaling == {"a": pytest.approx(4 / 2 ** 0.5)}
    assert layer.lora_A["a"].weight.dtype == torch.float64
    with pytest.raises(ranktune.Error, match="adapter 'a' already exists"):
        layer.update_layer("a", r=2, lora_alpha=4)
    layer.delete_adapter("a")
    assert len(layer.lora_A) == 0 and list(layer.parameters()) == list(layer.base_layer.parameters())
    with pytest.raises(TypeError, match="nn.Linear or GPT-2's Conv1D, got Embedding"):
        LoraLinear(nn.Embedding(3, 4))


def test_merge_unmerge_and_disable_run_in_the_cpp_layer():
    torch.manual_seed(0)
    net = Net(torch.float64)
    ranktune.torch.inject(net, ranktune.LoraConfig(r=3, lora_alpha=6, target_modules=["fc1"], use_dora=True))
    randomize_adapters(net)
    layer = net.fc1
    x = torch.randn(5, 12, dtype=torch.float64)
    y = net(x)
    w = layer.base_layer.weight.detach().clone()
    base_out = F.linear(x, w, layer.base_layer.bias)

    layer.merge(safe_merge=True)
    assert layer.merged and layer.merged_adapters == ["default"]
    assert not torch.allclose(layer.base_layer.weight, w)  # folded into the nn.Linear's own weight
    assert torch.allclose(net(x), y, atol=1e-10, rtol=0)
    layer.unmerge()
    assert not layer.merged and torch.allclose(layer.base_layer.weight, w, atol=1e-12, rtol=0)

    layer.enable_adapters(False)
    assert layer.disable_adapters and torch.allclose(layer(x), base_out, atol=1e-12, rtol=0)
    layer.enable_adapters(True)
    assert torch.allclose(net(x), y, atol=1e-12, rtol=0)


def test_deepcopy_gives_an_independent_module_with_the_same_outputs():
    torch.manual_seed(0)
    net = ranktune.torch.inject(Net(), ranktune.LoraConfig(r=2, target_modules=["fc1", "fc2"], use_dora=True))
    randomize_adapters(net)
    twin = copy.deepcopy(net)
    x = torch.randn(3, 12)
    assert torch.equal(twin(x), net(x))
    assert [p.requires_grad for p in twin.parameters()] == [p.requires_grad for p in net.parameters()]
    A = twin.fc1.lora_A["default"].weight
    assert A is twin.fc1._layer.adapter_weights("default")[0] and A is not net.fc1.lora_A["default"].weight
    with torch.no_grad():
        twin.fc1.lora_B["default"].weight.add_(1.0)
        twin.fc1.base_layer.weight.add_(1.0)
    assert not torch.equal(twin(x), net(x))
    net.fc1.merge()
    with pytest.raises(ValueError, match="cannot copy merged adapters \\(default\\): unmerge first"):
        copy.deepcopy(net)


def test_train_and_eval_reach_the_cpp_layer():
    net = ranktune.torch.inject(Net(), ranktune.LoraConfig(r=2, target_modules=["fc1"], lora_dropout=0.5))
    with torch.no_grad():
        net.fc1.lora_B["default"].weight.fill_(1.0)
    x = torch.randn(3, 12)
    net.eval()
    assert not net.fc1._layer.training and torch.equal(net(x), net(x))
    net.train()
    assert net.fc1._layer.training and not torch.equal(net(x), net(x))  # dropout masks differ


def reference_conv(net, x):
    """ConvNet with LoRA/DoRA from the formulas, W = weightᵀ (Conv1D stores [in, out])."""
    h = x
    for name in ("c_attn", "c_proj"):
        layer = getattr(net, name)
        W, b = layer.base_layer.weight.t(), layer.base_layer.bias
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        s = layer.scaling["default"]
        z = F.linear(h, W) + s * F.linear(F.linear(h, A), B)
        if "default" in layer.lora_magnitude_vector:
            n = torch.linalg.norm(W + s * B @ A, dim=1).detach()
            z = layer.lora_magnitude_vector["default"].weight / n * z
        h = z + b
        if name == "c_attn":
            h = torch.tanh(h)
    return h


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_gpt2_conv1d_is_adapted_with_fan_in_fan_out(tmp_path, use_dora):
    torch.manual_seed(0)
    net = ConvNet()
    config = ranktune.LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn", "c_proj"], use_dora=use_dora)
    with pytest.warns(UserWarning, match="fan_in_fan_out is set to False but the target module is `Conv1D`"):
        ranktune.torch.inject(net, config)
    assert net.peft_config["default"].fan_in_fan_out and not config.fan_in_fan_out  # corrected copy, as saved
    assert isinstance(net.c_attn, LoraLinear) and net.c_attn.fan_in_fan_out
    assert net.c_attn.lora_A["default"].weight.shape == (2, 6) and net.c_attn.lora_B["default"].weight.shape == (9, 2)
    randomize_adapters(net)

    x = torch.randn(2, 3, 6, dtype=torch.float64)
    y = net(x)
    assert torch.allclose(y, reference_conv(net, x), atol=1e-10, rtol=0)
    params = [p for _, p in ranktune.torch.adapter_parameters(net)]
    ours = torch.autograd.grad(y.square().sum(), params)
    theirs = torch.autograd.grad(reference_conv(net, x).square().sum(), params)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)

    # Merging writes s·Aᵀ Bᵀ into the [in, out] weight.
    layer = net.c_proj
    w = layer.base_layer.weight.detach().clone()
    layer.merge()
    if not use_dora:
        assert torch.allclose(layer.base_layer.weight, w + layer.get_delta_weight("default"), atol=1e-12, rtol=0)
        assert layer.get_delta_weight("default").shape == (9, 4)
    assert torch.allclose(net(x), y, atol=1e-10, rtol=0)
    layer.unmerge()

    ranktune.torch.save_adapter(net, tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    fresh = ConvNet()
    fresh.load_state_dict({k.replace("base_layer.", ""): v for k, v in net.state_dict().items() if "lora_" not in k})
    ranktune.torch.load_adapter(fresh, tmp_path)
    assert torch.equal(fresh(x), net(x))


def test_fan_in_fan_out_on_nn_linear_is_corrected_with_peft_warning():
    config = ranktune.LoraConfig(r=2, target_modules=["fc1"], fan_in_fan_out=True)
    with pytest.warns(UserWarning, match="fan_in_fan_out is set to True but the target module is `torch.nn.Linear`"):
        net = ranktune.torch.inject(Net(), config)
    assert not net.peft_config["default"].fan_in_fan_out and not net.fc1.fan_in_fan_out


class TiedNet(nn.Module):
    """An embedding tied to the output head, as GPT-2's wte and lm_head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.fc = nn.Linear(8, 8)
        self.lm_head = nn.Linear(8, 10, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids):
        return self.lm_head(torch.tanh(self.fc(self.embed(ids))))


def test_modules_to_save_trains_a_copy_and_leaves_the_tied_partner_untouched(tmp_path):
    torch.manual_seed(0)
    net = TiedNet()
    base_state = {k: v.clone() for k, v in net.state_dict().items()}
    embed = net.embed.weight.detach().clone()
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, target_modules=["fc"], modules_to_save=["lm_head"]))
    wrapper = net.lm_head
    assert isinstance(wrapper, ModulesToSaveWrapper) and wrapper.original_module.weight is net.embed.weight
    copy = wrapper.modules_to_save["default"]
    assert copy.weight is not net.embed.weight and torch.equal(copy.weight, net.embed.weight)
    assert sorted(n for n, p in net.named_parameters() if p.requires_grad) == [
        "fc.lora_A.default.weight", "fc.lora_B.default.weight", "lm_head.modules_to_save.default.weight"]

    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5)
    F.cross_entropy(net(ids).flatten(0, 1), ids.flatten()).backward()
    opt.step()
    assert torch.equal(net.embed.weight, embed)  # the tied partner is untouched
    assert not torch.equal(copy.weight, embed)

    ranktune.torch.save_adapter(net, tmp_path)
    tensors = ranktune.safetensors.load_file(tmp_path / "adapter_model.safetensors")
    assert sorted(tensors) == ["base_model.model.fc.lora_A.weight", "base_model.model.fc.lora_B.weight",
                               "base_model.model.lm_head.weight"]  # PEFT's key for the copy
    assert torch.equal(tensors["base_model.model.lm_head.weight"], copy.weight)

    fresh = TiedNet()
    fresh.load_state_dict(base_state)
    ranktune.torch.load_adapter(fresh, tmp_path, is_trainable=True)
    assert torch.equal(fresh(ids), net(ids))
    assert torch.equal(fresh.embed.weight, embed) and fresh.lm_head.original_module.weight is fresh.embed.weight
    assert fresh.lm_head.modules_to_save["default"].weight.requires_grad
    assert not fresh.embed.weight.requires_grad


def test_modules_to_save_follow_the_active_adapter():
    torch.manual_seed(0)
    net = TiedNet()
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, target_modules=["fc"], modules_to_save=["lm_head"]))
    ranktune.torch.inject(net, ranktune.LoraConfig(r=2, target_modules=["fc"], modules_to_save=["lm_head"]),
                          adapter_name="other")
    wrapper = net.lm_head
    assert sorted(wrapper.modules_to_save) == ["default", "other"] and wrapper.active_adapter == "other"
    with torch.no_grad():
        wrapper.modules_to_save["other"].weight.add_(1.0)
    ids = torch.tensor([[1, 2]])
    ranktune.torch.set_adapter(net, "default")
    assert wrapper.active_adapter == "default"
    assert wrapper.modules_to_save["default"].weight.requires_grad
    assert not wrapper.modules_to_save["other"].weight.requires_grad
    with_default = net(ids)
    ranktune.torch.set_adapter(net, "other")
    assert not torch.allclose(net(ids), with_default)


def test_modules_to_save_that_match_nothing_warn():
    with pytest.warns(UserWarning, match="modules_to_save \\['score'\\] matched no module"):
        ranktune.torch.inject(Net(), ranktune.LoraConfig(r=2, target_modules=["fc1"], modules_to_save=["score"]))
