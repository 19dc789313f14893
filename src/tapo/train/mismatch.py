"""The trainer's side of sampler/learner mismatch: which correction runs, the sampler's log-probs as tensors,
the metrics summed over micro-batches and processes, and the warning when they say something is wrong.

The trainer never assumes that the engine sampled from the policy it differentiates: every step it compares
the log-probs the engine reported (``Trajectory.logprobs``) with its own (:mod:`tapo.algo.correction`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import torch
from accelerate import Accelerator

from tapo.algo.correction import Correction, MismatchSums, rejected_sequences
from tapo.config.precision import engine_dtype
from tapo.config.schema import TapoConfig, TransformersEngineConfig
from tapo.records import Trajectory
from tapo.train.logprobs import pad_rows

log = logging.getLogger(__name__)


def resolve_correction(config: TapoConfig) -> Correction:
    """``auto``: token TIS when another model object samples (a vLLM engine or server, or a transformers engine's
    copy in another dtype) or when samples may be stale (``trainer.max_staleness``), none when the trainer's own
    transformers model samples synchronously (the gap is then rounding noise; a stale copy still shows in the
    metrics)."""
    mode = config.trainer.rollout_correction
    if mode != "auto":
        return mode
    if config.trainer.max_staleness:
        return "token_tis"
    engine = config.rollout.engine
    if not isinstance(engine, TransformersEngineConfig):
        return "token_tis"
    own_model = engine_dtype(engine.dtype) in ("auto", config.model.dtype)
    return "none" if own_model else "token_tis"


def sampler_tensors(trajectories: Sequence[Trajectory], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The engine's log-probs ``[B, width]`` and the mask ``[B, width]`` of model tokens that have one (an engine
    may report none, and environment tokens never have one). An expert's trajectory (guidance) has none: its
    log-probs are its script's (0), not a sampler's of the policy, so neither the correction nor the metrics see it."""
    logprobs = pad_rows([t.logprobs for t in trajectories], width)
    has_logprob = [
        [
            float(m == 1 and lp is not None and t.origin == "policy")
            for m, lp in zip(t.model_mask, t.logprobs, strict=False)
        ]
        for t in trajectories
    ]
    mask = pad_rows(has_logprob, width)
    return logprobs, mask


class LossItem(Protocol):
    """What :func:`drop_rejected` reads and changes of a trajectory prepared for the update."""

    traj: Trajectory
    old_logprobs: torch.Tensor | None  # [n] recorded when the step began; None for another process's share
    loss_mask: list[int]
    tokens: int  # sum(loss_mask): this trajectory's share of the token-mean's denominator


def drop_rejected(accelerator: Accelerator, items: Sequence[LossItem], cap: float) -> int:
    """``seq_mis`` before the update: empty the loss mask of every trajectory whose geometric-mean ratio leaves
    ``[1/cap, cap]``, so that its tokens leave the token-mean's denominator as well as its numerator (verl multiplies
    the rejection into the response mask before the loss). Returns how many were dropped.

    Each process judges the trajectories whose old log-probs it recorded; the verdicts are summed over processes, so
    that all of them count the same denominator for every mini-batch.
    """
    flags = torch.zeros(len(items))  # [N]
    for index, item in enumerate(items):
        if item.old_logprobs is None:
            continue  # another process's share: its verdict arrives with the sum
        old = item.old_logprobs.unsqueeze(0)  # [1, n]
        sampler, sampled = sampler_tensors([item.traj], old.shape[1])  # [1, n]
        flags[index] = rejected_sequences(old, sampler, sampled, cap)[0]
    if accelerator.num_processes > 1:
        flags = accelerator.reduce(flags.to(accelerator.device), "sum").cpu()
    for item, flag in zip(items, flags.tolist(), strict=True):
        if flag > 0:
            item.loss_mask = [0] * len(item.loss_mask)
            item.tokens = 0
    return int((flags > 0).sum())


def reduce_sums(accelerator: Accelerator, sums: MismatchSums) -> MismatchSums:
    """The sums of every process (counts and totals added, extremes combined)."""
    if accelerator.num_processes == 1:
        return sums
    device = accelerator.device
    additive = torch.tensor(
        [sums.tokens, sums.sequences, sums.abs_diff, sums.k3, sums.ratio, sums.truncated, sums.masked], device=device
    )  # [7]
    tokens, sequences, abs_diff, k3, ratio, truncated, masked = accelerator.reduce(additive, "sum").tolist()
    extremes = accelerator.gather(torch.tensor([[sums.ratio_max, -sums.ratio_min]], device=device))  # [P, 2]
    ratio_max, neg_min = extremes.max(dim=0).values.tolist()
    return MismatchSums(tokens, sequences, abs_diff, k3, ratio, ratio_max, -neg_min, truncated, masked)


def warn_if_mismatched(step: int, metrics: dict[str, float], threshold: float, correction: Correction) -> None:
    """One line when the sampler and the learner disagree more than ``rollout.mismatch_warn``."""
    kl = metrics.get("rollout/mismatch_kl", 0.0)
    if kl > threshold:
        log.warning(
            "step %d: sampler/learner mismatch KL %.3g > rollout.mismatch_warn=%g (mean |log-prob diff| %.3g): the "
            "engine may hold stale weights, sample in another dtype (bf16 vs fp32) or with other kernels (vLLM); "
            "rollout correction: %s",
            step,
            kl,
            threshold,
            metrics.get("rollout/logprob_diff_mean", 0.0),
            correction,
        )
