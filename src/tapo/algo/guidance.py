"""Guidance in groups where the policy never succeeds: which groups get an expert member, and the loss that trains
it (a departure from TAPO, docs/method.md; derivation in docs/training.md, "Guidance").

A group whose members all failed has zero advantage everywhere, so DAPO drops it: a kind of question the policy
never solves (search_code in the warm start of issue 32) is never reinforced. LUFFY (arXiv 2504.14945) and
David-GRPO (arXiv 2601.21699) put an off-policy expert trajectory into such groups; the group advantage then makes
the expert positive and the failures negative.

The expert's tokens were written by a script, which gave each of them probability 1, so its importance ratio to the
behaviour policy is ``pi_theta / 1``. PPO's clipped surrogate on that ratio would clip almost every token (the
ratio is far below ``1 - clip_low``) and give it no gradient; the plain ratio gives each token's log-likelihood
gradient the weight ``pi_theta``, which vanishes on exactly the tokens the policy does not yet produce. LUFFY's
policy shaping replaces the ratio by ``f(pi) = pi / (pi + gamma)``, unclipped, so the per-token loss is
``-A f(pi)`` and its gradient ``-A * gamma * pi / (pi + gamma)**2 * grad log pi``: the weight
(:func:`expert_token_weight`) peaks at 1/4 where ``pi = gamma`` and stays useful for tokens of low probability. The
policy's own members keep DAPO's loss unchanged, and every token (expert or not) counts once in the token-mean.
"""

from __future__ import annotations

import torch

from tapo.algo.loss import ClipConfig, LossOutput, dapo_loss


def groups_to_guide(acc: torch.Tensor, budget: int) -> list[int]:
    """The groups (rows of ``acc`` ``[groups, group_size]``, 1 for a right answer) that get an expert member: those
    with no right answer, in order, at most ``budget``."""
    if acc.dim() != 2:
        raise ValueError(f"acc must be shaped [groups, group_size], got {tuple(acc.shape)}")
    failed = (acc.to(torch.float64).amax(dim=1) <= 0).nonzero().flatten().tolist()  # [groups with no success]
    return failed[: max(0, budget)]


def shaped_probability(logprobs: torch.Tensor, gamma: float) -> torch.Tensor:
    """LUFFY's policy shaping ``f(pi) = pi / (pi + gamma)`` of each token's probability (``[B, T]``, with gradient)."""
    if gamma <= 0:
        raise ValueError(f"the shaping constant gamma must be > 0, got {gamma}")
    probs = torch.exp(logprobs.clamp(max=0.0))  # [B, T]
    return probs / (probs + gamma)


def expert_token_weight(logprobs: torch.Tensor, gamma: float) -> torch.Tensor:
    """The factor on ``grad log pi`` of an expert token with advantage 1: ``d f(pi) / d log pi = gamma * pi /
    (pi + gamma)**2`` (``[B, T]``, no gradient). What the shaping does, stated as a number per token."""
    probs = torch.exp(logprobs.detach().clamp(max=0.0))  # [B, T]
    return gamma * probs / (probs + gamma) ** 2


def mixed_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    expert: torch.Tensor,
    global_tokens: float,
    gamma: float,
    clip: ClipConfig | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    token_weights: torch.Tensor | None = None,
) -> LossOutput:
    """DAPO's loss (:func:`dapo_loss`) on the policy's rows plus the shaped off-policy loss on the expert rows.

    Tensors ``[B, T]`` as in :func:`dapo_loss`; ``expert`` ``[B]`` is 1 for a row written by the expert. The expert
    rows' tokens add ``-A f(pi)`` (:func:`shaped_probability`) to the sum, unclipped and without ``token_weights``
    (their sampler log-probs are the script's); both parts divide by the same ``global_tokens``. With no expert row
    this is :func:`dapo_loss` exactly. Stats add ``guided_loss`` and ``guided_token_frac`` (contributions, as
    :func:`dapo_loss`'s).
    """
    if expert.shape != mask.shape[:1]:
        raise ValueError(f"expert {tuple(expert.shape)} must give one flag per row of the mask {tuple(mask.shape)}")
    rows = expert.to(mask.dtype).unsqueeze(1)  # [B, 1]
    policy_mask = mask * (1 - rows)  # [B, T]
    expert_mask = (mask * rows).to(logprobs.dtype)  # [B, T]
    out = dapo_loss(
        logprobs, old_logprobs, advantages, policy_mask, global_tokens, clip, ref_logprobs, kl_coef, token_weights
    )
    guided = -(advantages.detach().to(logprobs.dtype) * shaped_probability(logprobs, gamma) * expert_mask).sum()
    guided = guided / global_tokens
    stats = dict(out.stats)
    stats["guided_loss"] = float(guided.detach())
    stats["guided_token_frac"] = float(expert_mask.sum() / global_tokens)
    return LossOutput(loss=out.loss + guided, stats=stats)
