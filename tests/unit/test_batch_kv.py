"""The reserved batch cache holds exactly what transformers' DynamicCache holds, through prefill, decode steps,
rows leaving the batch and a budget overrun, without allocating after its reservation (the point of it)."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tapo.engines.base import SamplingParams
from tapo.engines.batch_kv import ReservedCache, ReservedLayer, row_kv
from tapo.engines.hf import HFEngine

HEADS, DIM = 3, 4


def _states(rows: int, new: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (rows, HEADS, new, DIM)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def _same(reserved: ReservedLayer, dynamic: DynamicLayer) -> None:
    assert reserved.get_seq_length() == dynamic.get_seq_length()
    torch.testing.assert_close(reserved.keys, dynamic.keys, rtol=0, atol=0)
    torch.testing.assert_close(reserved.values, dynamic.values, rtol=0, atol=0)


def test_a_decode_batch_matches_the_dynamic_layer_without_reallocating() -> None:
    reserved, dynamic = ReservedLayer(capacity=10), DynamicLayer()
    for layer in (reserved, dynamic):
        layer.update(*_states(5, 6, seed=0))  # prefill: 5 rows, 6 positions
    buffer = reserved.keys.data_ptr()
    for step, keep in enumerate(([0, 1, 2, 3, 4], [0, 2, 3, 4], [1, 3], [0])):  # rows stop between steps
        index = torch.tensor(keep)
        for layer in (reserved, dynamic):
            layer.batch_select_indices(index)
        states = _states(len(keep), 1, seed=step + 1)
        for layer in (reserved, dynamic):
            layer.update(*states)
        _same(reserved, dynamic)
        assert reserved.keys.data_ptr() == buffer  # written in place: nothing allocated per token
    assert reserved.get_seq_length() == 10


def test_rows_in_another_order_and_an_overrun_stay_exact() -> None:
    reserved, dynamic = ReservedLayer(capacity=3), DynamicLayer()
    for layer in (reserved, dynamic):
        layer.update(*_states(4, 3, seed=0))
    for layer in (reserved, dynamic):
        layer.batch_select_indices(torch.tensor([3, 0, 2]))  # not ascending: gathered
    for seed in (1, 2):  # past the reservation of 3 positions: grows
        states = _states(3, 2, seed=seed)
        for layer in (reserved, dynamic):
            layer.update(*states)
    _same(reserved, dynamic)
    assert reserved.get_seq_length() == 7


def test_prefixes_load_right_aligned_with_zeros_before_them(tiny_model) -> None:
    config = tiny_model.config
    layers = config.num_hidden_layers
    heads, dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
    stored = [(torch.randn(heads, 2, dim), torch.randn(heads, 2, dim)) for _ in range(layers)]  # a 2-position entry
    cache = ReservedCache(config, capacity=8)
    cache.load_prefixes([(2, stored), (0, None)], width=3)
    first = cache.layers[0]
    assert first.keys.shape == (2, heads, 3, dim) and first.get_seq_length() == 3
    torch.testing.assert_close(first.keys[0, :, 1:], stored[0][0])
    assert first.keys[0, :, 0].abs().sum() == 0 and first.keys[1].abs().sum() == 0
    # the columns a row really has come back as one block per stored sequence, layer by layer
    kv = row_kv(cache, torch.tensor([1, 2]), 0)
    assert len(kv) == layers and kv[0][0].data_ptr() != first.keys.data_ptr()
    torch.testing.assert_close(kv[-1][1], stored[-1][1])
    assert isinstance(cache, DynamicCache)


def test_a_prompts_samples_fill_their_reserved_rows_in_place() -> None:
    reserved, dynamic = ReservedLayer(capacity=6, reserved_rows=4), DynamicLayer()
    for layer in (reserved, dynamic):
        layer.update(*_states(2, 3, seed=0))  # two distinct prompts prefilled once each
    buffer = reserved.keys.data_ptr()
    for layer in (reserved, dynamic):
        layer.batch_select_indices(torch.tensor([0, 0, 1, 1]))  # two samples of each
    states = _states(4, 1, seed=1)
    for layer in (reserved, dynamic):
        layer.update(*states)
    _same(reserved, dynamic)
    assert reserved.keys.data_ptr() == buffer


def test_batches_stay_within_the_kv_budget_and_sample_the_same(tiny_model, tokenizer) -> None:
    prompts = [tokenizer(f"question number {i} " * (i + 1))["input_ids"] for i in range(5)]
    params = SamplingParams(max_new_tokens=4, temperature=0.0)
    roomy = HFEngine(tiny_model, tokenizer, kv_reuse=False)
    tight = HFEngine(tiny_model, tokenizer, kv_reuse=False, batch_kv_gib=1.0)
    widest = max(len(p) for p in prompts) + 4
    tight.batch_kv_bytes = 2 * widest * tight.position_bytes  # two rows of the widest batch
    batches = tight._batches(prompts, [(0, None)] * 5, 4)
    assert sorted(i for b in batches for i in b) == list(range(5))
    for batch in batches:
        width = max(len(prompts[i]) for i in batch) + 4
        assert len(batch) * width * tight.position_bytes <= tight.batch_kv_bytes
    assert len(batches) >= 3 and len(roomy._batches(prompts, [(0, None)] * 5, 4)) == 1
    tight_ids = [g.token_ids for g in tight.generate(prompts, params)]
    assert tight_ids == [g.token_ids for g in roomy.generate(prompts, params)]
