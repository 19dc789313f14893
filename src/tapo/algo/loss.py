"""The DAPO policy loss: decoupled clipping, dual clip, token-mean over the model tokens of a mini-batch.

Every statistic is returned as a *contribution*: a sum over this call's mask-1 tokens divided by the
mini-batch's global token count. Micro-batches and processes then simply add their contributions
(gradient accumulation and an all-reduce sum) and get exactly the full mini-batch value, which is why
the caller passes ``global_tokens`` instead of letting each micro-batch average on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClipConfig:
    """PPO ratio bounds: ``[1 - low, 1 + high]``, and the dual-clip cap ``dual`` for negative advantages."""

    low: float = 0.2
    high: float = 0.28
    dual: float = 10.0

    def __post_init__(self) -> None:
        if self.low < 0 or self.high < 0 or self.low >= 1:
            raise ValueError(f"clip bounds must satisfy 0 <= low < 1 and high >= 0, got {self.low}, {self.high}")
        if self.dual <= 1:
            raise ValueError(f"dual clip must be > 1, got {self.dual}")


@dataclass
class LossOutput:
    """``loss`` carries the gradient; ``stats`` are detached contributions that add up across micro-batches."""

    loss: torch.Tensor
    stats: dict[str, float]


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(policy || reference): unbiased, always >= 0, low variance."""
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


def dapo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    global_tokens: float,
    clip: ClipConfig | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    token_weights: torch.Tensor | None = None,
) -> LossOutput:
    """DAPO's clipped surrogate, all tensors ``[B, T]`` (``mask`` 1 where a token counts).

    Per token, with ratio ``r = exp(logp - old)`` and advantage ``A``:
    ``l = max(-A r, -A clip(r, 1-low, 1+high))``, and for ``A < 0`` additionally ``l = min(l, -A dual)``
    (the dual clip keeps a huge ratio on a bad token from dominating). The loss is
    ``sum(w * l * mask) / global_tokens`` plus ``kl_coef`` times the token-mean k3 KL to a reference, where
    ``token_weights`` ``w`` (constants, default 1) is the rollout correction (:mod:`tapo.algo.correction`).
    """
    clip = clip or ClipConfig()
    if global_tokens <= 0:
        raise ValueError(f"global_tokens must be positive, got {global_tokens}")
    if not (logprobs.shape == old_logprobs.shape == advantages.shape == mask.shape):
        raise ValueError(
            "logprobs, old_logprobs, advantages and mask must share a shape, got "
            f"{[tuple(t.shape) for t in (logprobs, old_logprobs, advantages, mask)]}"
        )
    mask = mask.to(logprobs.dtype)
    old_logprobs = old_logprobs.detach()
    advantages = advantages.detach().to(logprobs.dtype)
    log_ratio = (logprobs - old_logprobs).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip.low, 1.0 + clip.high)
    per_token = torch.maximum(unclipped, clipped)
    negative = advantages < 0
    dual_cap = -advantages * clip.dual
    per_token = torch.where(negative, torch.minimum(per_token, dual_cap), per_token)
    if token_weights is not None:
        if token_weights.shape != mask.shape:
            raise ValueError(f"token_weights {tuple(token_weights.shape)} must match the mask {tuple(mask.shape)}")
        per_token = per_token * token_weights.detach().to(per_token.dtype)
    loss = (per_token * mask).sum() / global_tokens

    with torch.no_grad():
        ratio_d = ratio.detach()
        positive = advantages > 0

        def share(flags: torch.Tensor) -> float:
            return float((flags.to(mask.dtype) * mask).sum() / global_tokens)

        stats = {
            "pg_loss": float(loss.detach()),
            "clip_frac_low": share(negative & (ratio_d < 1.0 - clip.low)),
            "clip_frac_high": share(positive & (ratio_d > 1.0 + clip.high)),
            "clip_frac_dual": share(negative & (ratio_d > clip.dual)),
            "ratio_mean": float((ratio_d * mask).sum() / global_tokens),
            "approx_kl_old": float(((-log_ratio.detach()) * mask).sum() / global_tokens),
        }
    if ref_logprobs is not None and kl_coef > 0:
        kl = (k3_kl(logprobs, ref_logprobs.detach()) * mask).sum() / global_tokens
        loss = loss + kl_coef * kl
        stats["kl_ref"] = float(kl.detach())
    return LossOutput(loss=loss, stats=stats)
