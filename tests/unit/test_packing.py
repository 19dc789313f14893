"""Packed rows (tapo.train.packing): every sequence once, no row wider than the longest, positions reset, and the
log-probs of packed sequences equal their log-probs alone."""

from __future__ import annotations

import random

import pytest
import torch

from tapo.train.logprobs import pack_batch, pad_batch, response_logprobs
from tapo.train.packing import pack_rows, packed_positions

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rows_hold_every_sequence_once_and_none_is_wider_than_the_longest():
    lengths = [10, 3, 7, 2, 8, 5, 1, 10]
    rows = pack_rows(lengths)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= max(lengths) for row in rows)
    assert len(rows) == 5  # 46 positions in rows of 10: first-fit decreasing needs 5
    assert packed_positions(lengths) == (46, 50)


def test_a_packed_batch_resets_positions_and_points_at_each_response_tokens_predictor():
    batch = pack_batch([[1, 2], [3], [4, 5, 6]], [[7, 8, 9], [10], [11]], pad_id=0)
    # rows of 5 (the longest, 2 + 3), filled longest first: 5 | 4 (+ 2 does not fit) | 2
    assert batch.input_ids.tolist() == [[1, 2, 7, 8, 9], [4, 5, 6, 11, 0], [3, 10, 0, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 0], [0, 1, 0, 1, 2]]
    width = batch.input_ids.shape[1]
    flat_ids = batch.input_ids.reshape(-1)
    for b, (prompt, response) in enumerate([([1, 2], [7, 8, 9]), ([3], [10]), ([4, 5, 6], [11])]):
        n = len(response)
        predictors = batch.positions[b, :n]
        assert flat_ids[predictors + 1].tolist() == response  # the next position holds the token predicted
        assert flat_ids[predictors[0]].item() == prompt[-1]
        row, column = divmod(predictors[0].item() - len(prompt) + 1, width)
        assert batch.position_ids[row, column : column + len(prompt) + n].tolist() == list(range(len(prompt) + n))
    assert batch.response_mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]


def test_packed_log_probs_and_gradients_equal_the_padded_ones(tiny_model):
    rng = random.Random(1)
    prompts = [[rng.randrange(5, 900) for _ in range(rng.randint(1, 9))] for _ in range(6)]
    responses = [[rng.randrange(5, 900) for _ in range(rng.randint(1, 14))] for _ in range(6)]
    model = tiny_model.train()
    results = {}
    for name, build in (("padded", pad_batch), ("packed", pack_batch)):
        model.zero_grad(set_to_none=True)
        batch = build(prompts, responses, 0)
        logp, entropy = response_logprobs(model, batch, temperature=0.7, with_entropy=True, chunk_tokens=8)
        (logp * batch.response_mask).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results[name] = (logp.detach() * batch.response_mask, entropy * batch.response_mask, grads)
    (logp_a, ent_a, grads_a), (logp_b, ent_b, grads_b) = results["padded"], results["packed"]
    assert torch.allclose(logp_a, logp_b, atol=1e-5) and torch.allclose(ent_a, ent_b, atol=1e-5)
    assert grads_a and len(grads_a) == len(grads_b)
    for a, b in zip(grads_a, grads_b, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()
