"""The DAPO pure functions: advantages, constant-group filter and dynamic-sampling bookkeeping, the loss."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tapo.algo.advantages import broadcast_to_tokens, group_advantages
from tapo.algo.filtering import SamplingState, add_round, batch_full, constant_groups, finish
from tapo.algo.loss import ClipConfig, dapo_loss, k3_kl


def test_group_advantages_normalise_within_each_group() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    adv = group_advantages(rewards)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std().item()
    a = 0.5 / (std + 1e-6)
    assert adv[0].tolist() == pytest.approx([a, -a, -a, a])
    assert adv[1].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_group_advantages_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="groups"):
        group_advantages(torch.zeros(4))
    with pytest.raises(ValueError, match="group_size>=2"):
        group_advantages(torch.zeros(3, 1))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.floats(-5, 5), min_size=2, max_size=6), min_size=1, max_size=5).filter(
        lambda rows: len({len(r) for r in rows}) == 1
    )
)
def test_group_advantages_have_zero_mean_per_group(rows: list[list[float]]) -> None:
    adv = group_advantages(torch.tensor(rows))
    assert adv.mean(dim=1).abs().max().item() < 1e-4


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-10, 10, allow_nan=False, width=32),
    st.integers(2, 16),
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=2, max_size=2),
)
def test_a_constant_group_gets_exactly_zero_advantage(value: float, size: int, other: list[float]) -> None:
    """Issue 16 item 10: float32 rounding of the mean gave equal rewards a non-zero advantage."""
    rows = torch.tensor([[value] * size, (other * size)[:size]], dtype=torch.float32)
    assert group_advantages(rows)[0].tolist() == [0.0] * size
    assert group_advantages(torch.full((1, 3), 0.0015)).tolist() == [[0.0, 0.0, 0.0]]


def test_broadcast_puts_advantage_on_mask_one_tokens_only() -> None:
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 0]])
    out = broadcast_to_tokens(torch.tensor([2.0, -1.0]), mask)
    assert out.tolist() == [[2.0, 2.0, 0.0, 2.0], [0.0, -1.0, -1.0, 0.0]]
    with pytest.raises(ValueError):
        broadcast_to_tokens(torch.tensor([1.0]), mask)


def test_constant_groups_tolerate_float_noise() -> None:
    noisy = torch.tensor([1.0, 1.0 + 1e-9, 1.0 - 1e-9, 1.0 + 2e-9], dtype=torch.float64)
    assert noisy.std().item() > 0
    values = torch.stack([noisy, torch.tensor([0.0, 1.0, 0.0, 0.0]).double(), torch.zeros(4).double()])
    assert constant_groups(values, tol=1e-6).tolist() == [True, False, True]
    assert constant_groups(values, tol=0.0).tolist() == [False, False, True]


def test_dynamic_sampling_keeps_informative_groups_then_fills() -> None:
    target = 3
    state: SamplingState[str] = SamplingState()
    state = add_round(state, ["a", "b", "c"], [True, False, True], target)
    assert state.kept == ("b",) and state.reserve == ("a", "c") and state.filtered == 2
    assert not batch_full(state, target)
    state = add_round(state, ["d", "e"], [True, True], target)
    batch, filled = finish(state, target)
    assert batch == ["b", "a", "c"] and filled == 2
    assert state.rounds == 2 and state.seen == 5 and state.filtered == 4


def test_dynamic_sampling_stops_at_target() -> None:
    state = add_round(SamplingState(), [1, 2, 3, 4], [False] * 4, target=2)
    assert batch_full(state, 2)
    assert finish(state, 2) == ([1, 2], 0)
    with pytest.raises(ValueError):
        add_round(state, [1], [True, False], target=2)


def _hand_example() -> tuple[torch.Tensor, ...]:
    ratios = torch.tensor([[1.5, 0.5, 0.5, 20.0, 1.0, 3.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    old = torch.full_like(ratios, -2.0)
    return ratios, adv, mask, old


def test_dapo_loss_matches_hand_computation() -> None:
    ratios, adv, mask, old = _hand_example()
    logp = (old + ratios.log()).requires_grad_(True)
    out = dapo_loss(logp, old, adv, mask, global_tokens=5)
    # token 1: high clip -> -1.28; token 2: -0.5 (no clip); token 3: low clip -> 0.8;
    # token 4: dual clip -> 10; token 5: 1.0; token 6 is mask 0.
    assert out.loss.item() == pytest.approx((-1.28 - 0.5 + 0.8 + 10.0 + 1.0) / 5, abs=1e-5)
    assert out.stats["clip_frac_high"] == pytest.approx(0.2)
    assert out.stats["clip_frac_low"] == pytest.approx(0.2)
    assert out.stats["clip_frac_dual"] == pytest.approx(0.2)
    out.loss.backward()
    # clipped tokens carry no gradient; unclipped ones get -A * ratio / N; masked token none
    assert logp.grad[0].tolist() == pytest.approx([0.0, -0.5 / 5, 0.0, 0.0, 1.0 / 5, 0.0], abs=1e-6)


def test_token_mean_ignores_mask_zero_tokens() -> None:
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    adv = torch.tensor([[1.0, 1.0, 1.0]])
    base = dapo_loss(logp, logp, adv, torch.tensor([[1, 1, 0]]), global_tokens=2)
    changed = dapo_loss(
        torch.tensor([[-1.0, -2.0, 5.0]]), logp, torch.tensor([[1.0, 1.0, -7.0]]), torch.tensor([[1, 1, 0]]), 2
    )
    assert base.loss.item() == pytest.approx(-1.0)
    assert changed.loss.item() == pytest.approx(base.loss.item())


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 6), st.integers(1, 7), st.integers(0, 10_000))
def test_micro_batches_sum_to_the_full_batch_loss(rows: int, cols: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    logp = -torch.rand(rows, cols, generator=gen) * 3
    old = logp + (torch.rand(rows, cols, generator=gen) - 0.5)
    adv = torch.randn(rows, cols, generator=gen)
    mask = (torch.rand(rows, cols, generator=gen) > 0.3).long()
    total = max(1, int(mask.sum()))
    full = dapo_loss(logp, old, adv, mask, total)
    parts = [dapo_loss(logp[i : i + 1], old[i : i + 1], adv[i : i + 1], mask[i : i + 1], total) for i in range(rows)]
    assert sum(p.loss.item() for p in parts) == pytest.approx(full.loss.item(), abs=1e-5)
    for key in ("clip_frac_low", "clip_frac_high", "clip_frac_dual"):
        assert sum(p.stats[key] for p in parts) == pytest.approx(full.stats[key], abs=1e-6)


def test_kl_term_is_off_by_default_and_k3_is_nonnegative() -> None:
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    adv = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    assert "kl_ref" not in dapo_loss(logp, logp, adv, mask, 2, ref_logprobs=ref).stats
    out = dapo_loss(logp, logp, adv, mask, 2, ref_logprobs=ref, kl_coef=0.5)
    expected = k3_kl(logp, ref).mean().item()
    assert expected > 0 and out.stats["kl_ref"] == pytest.approx(expected)
    assert out.loss.item() == pytest.approx(0.5 * expected)
    assert k3_kl(ref, ref).abs().max().item() == 0.0


def test_bad_loss_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="share a shape"):
        dapo_loss(torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(1, 2), torch.ones(1, 2), 2)
    with pytest.raises(ValueError, match="positive"):
        dapo_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), 0)
    with pytest.raises(ValueError, match="dual"):
        ClipConfig(dual=1.0)
    assert math.isfinite(ClipConfig().high)
