"""Sampler/learner mismatch: measure it on every model token, and correct the loss for it.

The engine that sampled a trajectory (vLLM kernels, a bf16 copy, weights one sync behind) is never exactly
the policy the trainer differentiates. With ``log p_train`` the trainer's log-prob of a sampled token under
the weights it had when the step began and ``log p_sample`` the engine's, the importance ratio is
``r = exp(log p_train - log p_sample)``. Two corrections are offered:

- ``token_tis`` (truncated importance sampling): every token's loss is weighted by ``min(r, cap)``, a
  constant (no gradient). This is TRL's ``vllm_importance_sampling_correction`` in its ``token_truncate``
  mode and verl's token-level rollout IS (``rollout_is: token``) with threshold ``cap``.
- ``seq_mis`` (sequence-level masked importance sampling): a trajectory whose geometric-mean ratio
  ``exp(mean_t log r_t)`` leaves ``[1/cap, cap]`` is rejected (:func:`rejected_sequences`): it leaves the loss
  mask, so its tokens leave the token-mean's denominator too; the others keep weight 1. This is verl's geometric
  rejection sampling (``rollout_rs: geometric``, later ``seq_mean_k1``), which multiplies the rejection into the
  response mask, with bounds ``[1/cap, cap]`` and no IS weight. verl's preset uses ``cap = 1.001`` (±0.1 %); tapo's
  default cap of 2 (shared with ``token_tis``) is a far looser band. Where every trajectory is rejected verl's
  token-mean is 0/0 (NaN); tapo's loss is 0.

All tensors are ``[B, T]``; ``mask`` is 1 on the tokens the engine sampled and reported a log-prob for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Correction = Literal["none", "token_tis", "seq_mis"]
CORRECTIONS: tuple[Correction, ...] = ("none", "token_tis", "seq_mis")


@dataclass(frozen=True)
class CorrectionWeights:
    """What a correction does to one micro-batch: per-token loss weights and what it cut."""

    weights: torch.Tensor  # [B, T] multiplies each token's loss (1 where nothing is corrected)
    truncated: torch.Tensor  # [B, T] 1 where token TIS capped the ratio
    masked: torch.Tensor  # [B] 1 for a trajectory sequence MIS rejected


def log_ratio(train_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log p_train - log p_sample`` on mask-1 tokens, 0 elsewhere (clamped so ``exp`` stays finite), in float32
    or wider when the inputs are wider."""
    dtype = torch.promote_types(train_logprobs.dtype, torch.float32)
    return ((train_logprobs.detach().to(dtype) - sampler_logprobs.to(dtype)) * mask).clamp(-20.0, 20.0)


def correction_weights(
    train_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor, mode: Correction, cap: float
) -> CorrectionWeights:
    """The loss weights of ``mode`` (see the module docstring) for one micro-batch."""
    if mode not in CORRECTIONS:
        raise ValueError(f"unknown rollout correction {mode!r}; choose one of {', '.join(CORRECTIONS)}")
    if cap <= 1.0:
        raise ValueError(f"the importance-ratio cap must be > 1, got {cap}")
    mask = mask.float()
    log_r = log_ratio(train_logprobs, sampler_logprobs, mask)  # [B, T]
    ones = torch.ones_like(log_r)  # [B, T]
    no_rows = torch.zeros(log_r.shape[0], device=log_r.device)  # [B]
    if mode == "token_tis":
        ratio = torch.exp(log_r)  # [B, T]
        truncated = (ratio > cap).float() * mask
        return CorrectionWeights(torch.where(mask > 0, ratio.clamp(max=cap), ones), truncated, no_rows)
    if mode == "seq_mis":
        masked = rejected_sequences(train_logprobs, sampler_logprobs, mask, cap)  # [B]
        return CorrectionWeights(ones * (1.0 - masked).unsqueeze(1), torch.zeros_like(log_r), masked)
    return CorrectionWeights(ones, torch.zeros_like(log_r), no_rows)


def rejected_sequences(
    train_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor, cap: float
) -> torch.Tensor:
    """``[B]``: 1 for a trajectory whose geometric-mean ratio leaves ``[1/cap, cap]`` (``seq_mis``), 0 otherwise and
    for a trajectory with no sampler log-prob.

    The trainer decides this once per step, from the log-probs the step starts with, and takes the rejected
    trajectories out of the loss mask before it counts the token-mean's denominator, as verl does.
    """
    mask = mask.float()
    log_r = log_ratio(train_logprobs, sampler_logprobs, mask)  # [B, T]
    tokens = mask.sum(dim=1)  # [B]
    geometric = torch.exp(log_r.sum(dim=1) / tokens.clamp(min=1.0))  # [B]
    return ((geometric > cap) | (geometric < 1.0 / cap)).float() * (tokens > 0).float()


@dataclass(frozen=True)
class MismatchSums:
    """Sums over the tokens (and sequences) of one micro-batch; add them up, then :func:`mismatch_metrics`."""

    tokens: float  # model tokens with a sampler log-prob
    sequences: float  # trajectories with at least one such token
    abs_diff: float  # sum |log p_sample - log p_train|
    k3: float  # sum of the k3 estimator of KL(sampler || learner)
    ratio: float  # sum of r
    ratio_max: float
    ratio_min: float
    truncated: float  # tokens whose ratio token TIS capped
    masked: float  # trajectories sequence MIS dropped

    def __add__(self, other: MismatchSums) -> MismatchSums:
        return MismatchSums(
            self.tokens + other.tokens,
            self.sequences + other.sequences,
            self.abs_diff + other.abs_diff,
            self.k3 + other.k3,
            self.ratio + other.ratio,
            max(self.ratio_max, other.ratio_max),
            min(self.ratio_min, other.ratio_min),
            self.truncated + other.truncated,
            self.masked + other.masked,
        )


NO_MISMATCH = MismatchSums(0.0, 0.0, 0.0, 0.0, 0.0, float("-inf"), float("inf"), 0.0, 0.0)


def mismatch_sums(
    train_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor, applied: CorrectionWeights
) -> MismatchSums:
    """The sums behind the ``rollout/*`` metrics for one micro-batch.

    k3 = ``r - log r - 1`` with ``r = p_train / p_sample`` on tokens drawn from the sampler: an unbiased,
    non-negative estimate of KL(sampler || learner) (Schulman's k3), as verl and TRL log it. Taken in float64 as
    ``expm1(log r) - log r``: in sync the per-token values are ~1e-11, which float32 rounds to noise of either sign.
    """
    mask = mask.double()
    if not mask.any():
        return NO_MISMATCH
    log_r = log_ratio(train_logprobs.double(), sampler_logprobs.double(), mask).double()  # [B, T]
    ratio = torch.exp(log_r)  # [B, T]
    on = mask > 0
    return MismatchSums(
        tokens=float(mask.sum()),
        sequences=float((mask.sum(dim=1) > 0).sum()),
        abs_diff=float((log_r.abs() * mask).sum()),
        k3=float(((torch.expm1(log_r) - log_r) * mask).sum()),
        ratio=float((ratio * mask).sum()),
        ratio_max=float(ratio[on].max()),
        ratio_min=float(ratio[on].min()),
        truncated=float(applied.truncated.sum()),
        masked=float(applied.masked.sum()),
    )


def mismatch_metrics(sums: MismatchSums) -> dict[str, float]:
    """Means over model tokens (and fractions of tokens and sequences) from the summed micro-batches."""
    tokens, sequences = max(sums.tokens, 1.0), max(sums.sequences, 1.0)
    seen = sums.tokens > 0
    return {
        "rollout/logprob_diff_mean": sums.abs_diff / tokens,
        "rollout/mismatch_kl": sums.k3 / tokens,
        "rollout/is_ratio_mean": sums.ratio / tokens if seen else 1.0,
        "rollout/is_ratio_max": sums.ratio_max if seen else 1.0,
        "rollout/is_ratio_min": sums.ratio_min if seen else 1.0,
        "rollout/truncated_token_frac": sums.truncated / tokens,
        "rollout/masked_seq_frac": sums.masked / sequences,
        "rollout/sampler_tokens": sums.tokens,
    }
