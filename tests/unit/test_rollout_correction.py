"""Rollout correction and mismatch metrics against hand-computed values."""

from __future__ import annotations

import math
import types

import pytest
import torch

from tapo.algo.correction import (
    NO_MISMATCH,
    correction_weights,
    mismatch_metrics,
    mismatch_sums,
    rejected_sequences,
)
from tapo.algo.loss import dapo_loss
from tapo.train.mismatch import drop_rejected

# Two trajectories, three tokens each; the last token of row 0 was inserted by the environment (mask 0).
# Token ratios r = p_train / p_sample: row 0 → 3, 0.5; row 1 → 1, 1, 4 (geometric means 1.2247 and 1.5874).
SAMPLER = torch.tensor([[-1.0, -1.0, -9.0], [-2.0, -2.0, -2.0]])
TRAIN = SAMPLER + torch.tensor([[math.log(3.0), math.log(0.5), 0.0], [0.0, 0.0, math.log(4.0)]])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])


def test_token_tis_caps_each_ratio():
    applied = correction_weights(TRAIN, SAMPLER, MASK, "token_tis", cap=2.0)
    torch.testing.assert_close(applied.weights, torch.tensor([[2.0, 0.5, 1.0], [1.0, 1.0, 2.0]]))
    assert applied.truncated.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert applied.masked.tolist() == [0.0, 0.0]


def test_seq_mis_drops_a_trajectory_whose_geometric_ratio_leaves_the_band():
    # cap 1.5: row 0 (1.22) stays, row 1 (1.59 > 1.5) is dropped whole
    applied = correction_weights(TRAIN, SAMPLER, MASK, "seq_mis", cap=1.5)
    assert applied.weights.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert applied.masked.tolist() == [0.0, 1.0]
    low = correction_weights(SAMPLER, TRAIN, MASK, "seq_mis", cap=1.5)  # ratios inverted: 0.82 and 0.63 < 1/1.5
    assert low.masked.tolist() == [0.0, 1.0]


def test_none_changes_nothing_and_bad_settings_fail():
    assert correction_weights(TRAIN, SAMPLER, MASK, "none", cap=2.0).weights.tolist() == [[1.0] * 3] * 2
    with pytest.raises(ValueError, match="unknown rollout correction"):
        correction_weights(TRAIN, SAMPLER, MASK, "tis", cap=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be > 1"):
        correction_weights(TRAIN, SAMPLER, MASK, "token_tis", cap=1.0)


@pytest.mark.parametrize(
    ("mode", "cap", "expected"),
    [
        # on-policy ratio 1 per token (old = current), advantages +1 on row 0 and -1 on row 1, 5 tokens:
        # per-token loss -A; weighted by the correction, summed, over 5
        ("none", 2.0, (-1 - 1 + 1 + 1 + 1) / 5),
        ("token_tis", 2.0, (-2.0 - 0.5 + 1.0 + 1.0 + 2.0) / 5),
        ("seq_mis", 1.5, (-1 - 1 + 0 + 0 + 0) / 5),
    ],
)
def test_corrected_loss_equals_the_hand_computed_value(mode, cap, expected):
    advantages = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]])
    logp = TRAIN.clone().requires_grad_(True)
    applied = correction_weights(TRAIN, SAMPLER, MASK, mode, cap)
    out = dapo_loss(logp, TRAIN, advantages, MASK, global_tokens=5, token_weights=applied.weights)
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    out.loss.backward()  # the weights are constants: d loss / d logp = -A * w / 5 on every unclipped token
    torch.testing.assert_close(logp.grad, -advantages * applied.weights * MASK / 5)


def test_mismatch_metrics_are_means_over_model_tokens():
    applied = correction_weights(TRAIN, SAMPLER, MASK, "token_tis", cap=2.0)
    half = mismatch_sums(
        TRAIN[:1], SAMPLER[:1], MASK[:1], correction_weights(TRAIN[:1], SAMPLER[:1], MASK[:1], "token_tis", 2.0)
    )
    rest = mismatch_sums(
        TRAIN[1:], SAMPLER[1:], MASK[1:], correction_weights(TRAIN[1:], SAMPLER[1:], MASK[1:], "token_tis", 2.0)
    )
    metrics = mismatch_metrics(NO_MISMATCH + half + rest)
    assert metrics == mismatch_metrics(mismatch_sums(TRAIN, SAMPLER, MASK, applied))  # micro-batches add up
    logs = [math.log(3.0), math.log(0.5), 0.0, 0.0, math.log(4.0)]
    ratios = [3.0, 0.5, 1.0, 1.0, 4.0]
    assert metrics["rollout/logprob_diff_mean"] == pytest.approx(sum(map(abs, logs)) / 5)
    assert metrics["rollout/mismatch_kl"] == pytest.approx(
        sum(r - lr - 1 for r, lr in zip(ratios, logs, strict=True)) / 5
    )
    assert metrics["rollout/is_ratio_mean"] == pytest.approx(9.5 / 5)
    assert (metrics["rollout/is_ratio_max"], metrics["rollout/is_ratio_min"]) == pytest.approx((4.0, 0.5))
    assert metrics["rollout/truncated_token_frac"] == pytest.approx(2 / 5)
    assert metrics["rollout/masked_seq_frac"] == 0.0


def test_identical_log_probs_show_no_mismatch():
    metrics = mismatch_metrics(
        mismatch_sums(TRAIN, TRAIN, MASK, correction_weights(TRAIN, TRAIN, MASK, "seq_mis", 2.0))
    )
    assert metrics["rollout/logprob_diff_mean"] == 0.0 and metrics["rollout/mismatch_kl"] == 0.0
    assert metrics["rollout/is_ratio_max"] == metrics["rollout/is_ratio_min"] == 1.0


def _prepared(rows: torch.Tensor, sampler: torch.Tensor, mask: torch.Tensor) -> list:
    """The trainer's prepared items for these rows: old log-probs recorded, the loss on the model tokens."""
    from tapo.records import Trajectory
    from tapo.train.trainer import Prepared

    items = []
    for old, logprobs, model in zip(rows, sampler, mask.tolist(), strict=True):
        traj = Trajectory([1], response_ids=[5] * len(model), model_mask=model, logprobs=logprobs.tolist())
        items.append(Prepared(traj, advantage=0.0, loss_mask=list(model), old_logprobs=old.clone()))
    return items


ONE_PROCESS = types.SimpleNamespace(num_processes=1)


def test_seq_mis_takes_rejected_tokens_out_of_the_token_mean_as_verl_does():
    """Issue 29: verl multiplies the rejection into the response mask, so the token-mean counts kept tokens only.

    cap 1.5 rejects row 1 (geometric ratio 1.59): 2 tokens are kept of 5. With advantages +1 (row 0) and -1 (row 1)
    on-policy, verl's loss is (-1 - 1) / 2 = -1 and its gradient -A / 2 on the kept tokens; before, tapo divided by
    all 5 tokens (-0.4: verl's scaled by kept/all).
    """
    assert rejected_sequences(TRAIN, SAMPLER, MASK, cap=1.5).tolist() == [0.0, 1.0]
    items = _prepared(TRAIN, SAMPLER, MASK)
    assert drop_rejected(ONE_PROCESS, items, cap=1.5) == 1  # type: ignore[arg-type]
    assert [item.loss_mask for item in items] == [[1, 1, 0], [0, 0, 0]]
    assert [item.tokens for item in items] == [2, 0]
    kept = torch.tensor([item.loss_mask for item in items])
    global_tokens = max(1, sum(item.tokens for item in items))
    advantages = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]])
    logp = TRAIN.clone().requires_grad_(True)
    out = dapo_loss(logp, TRAIN, advantages, kept, global_tokens)
    assert out.loss.item() == pytest.approx(-1.0)
    out.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5, -0.5, 0.0], [0.0, 0.0, 0.0]]))


def test_seq_mis_rejecting_everything_gives_a_zero_loss_not_nan():
    """verl's token-mean is 0/0 when every trajectory is rejected; tapo's denominator is at least 1, its loss 0."""
    items = _prepared(TRAIN, SAMPLER, MASK)
    assert drop_rejected(ONE_PROCESS, items, cap=1.1) == 2  # type: ignore[arg-type]  # 1.22 and 1.59 > 1.1
    kept = torch.tensor([item.loss_mask for item in items])
    logp = TRAIN.clone().requires_grad_(True)
    out = dapo_loss(logp, TRAIN, torch.ones(2, 3), kept, max(1, sum(item.tokens for item in items)))
    out.loss.backward()
    assert out.loss.item() == 0.0 and not logp.grad.any()


def test_seq_mis_judges_only_its_own_share_and_keeps_rows_without_sampler_logprobs():
    items = _prepared(TRAIN, SAMPLER, MASK)
    items[1].old_logprobs = None  # another process's share: judged there
    assert drop_rejected(ONE_PROCESS, items, cap=1.5) == 0  # type: ignore[arg-type]
    no_logprobs = _prepared(TRAIN, SAMPLER, MASK)
    no_logprobs[1].traj.logprobs = [None, None, None]  # an engine that reports none: nothing to judge
    assert drop_rejected(ONE_PROCESS, no_logprobs, cap=1.5) == 0  # type: ignore[arg-type]
    assert no_logprobs[1].tokens == 3
