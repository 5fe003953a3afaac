"""GRPO's arithmetic with TRL's names: group-relative advantages and the clipped-surrogate loss.

For users who write their own reinforcement-learning loop around ranktune's model (or any torch
model): tensors in, a differentiable loss out, computed by the same C++ code as ``ranktune grpo``
(``include/ranktune/train/grpo_loss.h``; formulas in docs/grpo.md).

    import ranktune.rl as rl
    advantages = rl.group_advantages(rewards, num_generations=8)            # [prompts * 8]
    loss = rl.grpo_loss(logps, None, None, advantages, completion_mask)     # on-policy, beta = 0
    loss.backward()
"""

from . import _core

_rl = _core.rl


def group_advantages(rewards, num_generations, scale_rewards="group", *, return_stats=False):
    """Advantages of ``rewards`` [N] (rows of one prompt adjacent: N = prompts x num_generations).

    As TRL's GRPOTrainer: ``rewards - group mean``, divided by ``std + 1e-4`` where ``scale_rewards``
    is ``"group"`` (each group's std) or ``"batch"`` (the batch's), not divided for ``"none"``.
    NaN rewards (unscorable completions) are left out of the statistics and get advantage 0.
    With ``return_stats=True`` returns ``(advantages, std_is_zero, frac_reward_zero_std)``.
    """
    advantages, std_is_zero, frac_zero = _rl.group_advantages(rewards, num_generations, scale_rewards)
    return (advantages, std_is_zero, frac_zero) if return_stats else advantages


def combine_rewards(rewards_per_func, reward_weights):
    """Weighted sum of the columns of ``rewards_per_func`` [N, F] (NaN: the function does not apply,
    counted as 0); a row where every function gave NaN stays NaN. Returns float64 [N]."""
    return _rl.combine_rewards(rewards_per_func, list(reward_weights))


def grpo_loss(logps, old_logps, ref_logps, advantages, completion_mask, *, loss_type="dapo", epsilon=0.2,
              epsilon_high=None, beta=0.0, max_completion_length=None, num_items_in_batch=None,
              return_metrics=False):
    """GRPO's loss for per-token log-probabilities ``logps`` [B, T] of sampled completions.

    ``old_logps`` None means on-policy (the detached ``logps``: ratio 1); ``ref_logps`` is used only
    when ``beta`` is not 0 (k3 KL estimator). ``loss_type`` is ``grpo``, ``bnpo``, ``dr_grpo`` (needs
    ``max_completion_length``) or ``dapo`` (normalised by ``num_items_in_batch``, default the
    batch's completion tokens). ``epsilon_high`` defaults to ``epsilon``. With
    ``return_metrics=True`` also returns TRL's clip ratios (and ``kl`` when beta is not 0).
    """
    loss, metrics = _rl.grpo_loss(logps, old_logps, ref_logps, advantages, completion_mask, loss_type=loss_type,
                                  epsilon=epsilon, epsilon_high=epsilon_high, beta=beta,
                                  max_completion_length=max_completion_length,
                                  num_items_in_batch=num_items_in_batch)
    return (loss, metrics) if return_metrics else loss


__all__ = ["combine_rewards", "grpo_loss", "group_advantages"]
