"""ranktune.rl against TRL's GRPOTrainer formulas, written here in plain torch float64 (from
trl/trainer/grpo_trainer.py: _generate_and_score_completions and _compute_loss), value and
gradient, for every loss type, with and without old/ref log-probs, including zero-spread groups."""

import pytest
import torch

import ranktune
import ranktune.rl as rl


def trl_nanstd(x, dim=None):
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    var = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
    var = var * torch.where(count > 1, count / (count - 1), torch.full_like(var, float("nan")))
    return torch.sqrt(var) if dim is None else torch.sqrt(var).squeeze(dim)


def trl_advantages(rewards, g, scale):
    mean = torch.nanmean(rewards.view(-1, g), dim=1).repeat_interleave(g)
    if scale == "batch":
        std = trl_nanstd(rewards).expand_as(rewards)
    else:
        std = trl_nanstd(rewards.view(-1, g), dim=1).repeat_interleave(g)
    adv = rewards - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


def trl_loss(logps, old, ref, adv, mask, loss_type, eps, eps_high, beta, max_len):
    old = logps.detach() if old is None else old
    coef_1 = torch.exp(logps - old)
    coef_2 = torch.clamp(coef_1, 1 - eps, 1 + eps_high)
    per_token = -torch.min(coef_1 * adv.unsqueeze(1), coef_2 * adv.unsqueeze(1))
    if beta != 0.0:
        per_token = per_token + beta * (torch.exp(ref - logps) - (ref - logps) - 1)
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (per_token.size(0) * max_len)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)  # dapo, one process, no accumulation


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_match_trl(scale):
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0, 2.0, float("nan"), 0.0, 1.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    got = rl.group_advantages(rewards, 4, scale)
    # TRL's Bessel factor count / (count - 1) divides int64 tensors, which gives float32: hence 1e-7.
    torch.testing.assert_close(got, trl_advantages(rewards, 4, scale), rtol=1e-7, atol=1e-9)
    _, std_is_zero, frac = rl.group_advantages(rewards, 4, scale, return_stats=True)
    assert frac == pytest.approx(1 / 3)  # the last group scored 1 everywhere
    assert not torch.isnan(got).any()


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("with_old", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_matches_trl_value_and_gradient(loss_type, with_old, beta):
    gen = torch.Generator().manual_seed(7)
    logps = (-torch.rand(6, 5, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    old = logps.detach() + torch.randn(6, 5, generator=gen, dtype=torch.float64) * 0.4 if with_old else None
    ref = logps.detach() + torch.randn(6, 5, generator=gen, dtype=torch.float64) * 0.3
    mask = (torch.rand(6, 5, generator=gen) > 0.3).double()
    mask[:, 0] = 1
    adv = rl.group_advantages(torch.tensor([1.0, 0, 1, 0, 0, 0], dtype=torch.float64), 3)
    loss, metrics = rl.grpo_loss(logps, old, ref, adv, mask, loss_type=loss_type, epsilon=0.2, epsilon_high=0.28,
                                 beta=beta, max_completion_length=5, return_metrics=True)
    (grad,) = torch.autograd.grad(loss, logps)
    logps_ref = logps.detach().clone().requires_grad_(True)
    want = trl_loss(logps_ref, old, ref, adv, mask, loss_type, 0.2, 0.28, beta, 5)
    (want_grad,) = torch.autograd.grad(want, logps_ref)
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=0, atol=1e-12)
    assert ("kl" in metrics) == (beta != 0)
    # The second group scored 0 everywhere: its rows have zero advantage, so without the KL term
    # they get no gradient.
    if beta == 0:
        assert grad[3:].abs().max().item() == 0.0


def test_grpo_loss_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(3)
    logps = (-torch.rand(3, 4, generator=gen, dtype=torch.float64)).requires_grad_(True)
    old = logps.detach() + 0.1 * torch.randn(3, 4, generator=gen, dtype=torch.float64)
    ref = logps.detach() - 0.2
    adv = torch.tensor([0.9, -0.4, -0.5], dtype=torch.float64)
    mask = torch.ones(3, 4, dtype=torch.float64)

    def f(x):
        return rl.grpo_loss(x, old, ref, adv, mask, loss_type="grpo", beta=0.1, epsilon_high=0.28)

    assert torch.autograd.gradcheck(f, (logps,), eps=1e-6, atol=1e-7)


def test_bad_arguments_are_named():
    with pytest.raises(ranktune.Error, match="scale_rewards: 'mean'"):
        rl.group_advantages(torch.zeros(4), 2, "mean")
    with pytest.raises(ranktune.Error, match="loss_type: 'ppo'"):
        rl.grpo_loss(torch.zeros(2, 3), None, None, torch.zeros(2), torch.ones(2, 3), loss_type="ppo")
    with pytest.raises(ranktune.Error, match="beta > 0 needs ref_logps"):
        rl.grpo_loss(torch.zeros(2, 3), None, None, torch.zeros(2), torch.ones(2, 3), beta=0.1)
