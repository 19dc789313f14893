"""Group-relative advantages (GRPO/DAPO): each trajectory is judged against the others of its prompt.

No value network: the group mean is the baseline and the group std the scale, so the advantage of a
trajectory says how much better it did than its siblings. The same scalar is given to every model
token of the trajectory (an outcome reward has no per-token credit assignment).
"""

from __future__ import annotations

import torch

ADVANTAGE_EPS = 1e-6


def group_advantages(rewards: torch.Tensor, eps: float = ADVANTAGE_EPS) -> torch.Tensor:
    """``(r - group mean) / (group std + eps)`` for rewards shaped ``[groups, group_size]``.

    The std is the unbiased one (Bessel's correction), as in verl, which TAPO's code is a fork of; a
    constant group therefore gets advantage exactly 0 for every member rather than a division by zero.
    Exactly, not nearly: a float32 mean of equal values can miss them by one rounding step, and that
    step divided by ``std + eps`` (with std 0) became an advantage of up to ~0.06. So the statistics are
    taken in float64 on rewards shifted by each group's first member; the shift makes every member of a
    constant group exactly 0 before any sum, so its mean, std and advantages are exactly 0 too.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be shaped [groups, group_size>=2], got {tuple(rewards.shape)}")
    shifted = rewards.to(torch.float64) - rewards[:, :1].to(torch.float64)
    mean = shifted.mean(dim=1, keepdim=True)
    std = shifted.std(dim=1, keepdim=True, unbiased=True)
    return ((shifted - mean) / (std + eps)).to(torch.float32)


def broadcast_to_tokens(advantages: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Give each sequence's advantage to its mask-1 tokens, 0 elsewhere: ``[B]`` x ``[B, T]`` -> ``[B, T]``."""
    if advantages.dim() != 1 or token_mask.dim() != 2 or advantages.shape[0] != token_mask.shape[0]:
        raise ValueError(
            f"advantages [B] and token_mask [B, T] disagree: {tuple(advantages.shape)} vs {tuple(token_mask.shape)}"
        )
    return advantages.to(torch.float32).unsqueeze(1) * token_mask.to(torch.float32)
