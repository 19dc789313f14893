"""KV reuse across turns in the transformers engine: exact against a full forward, freed, capped, in fp32 and bf16.

Multi-turn trajectories here are real rollouts (RolloutRunner: a random tiny model writes no valid action, so
every turn is followed by the corrective message, an environment insertion tokenized on its own) or concurrent
tasks that append their own "tool output" ids of different lengths, so one batch of the AsyncBatcher mixes rows
with different cached lengths and different new suffixes.
"""

from __future__ import annotations

import asyncio
import random

import pytest
import torch

from tapo.config.schema import RolloutConfig
from tapo.engines.base import SamplingParams
from tapo.engines.batch_kv import kv_position_bytes
from tapo.engines.hf import HFEngine
from tapo.engines.kv_cache import KVStats, position_bytes, store_bytes
from tapo.rollout.agent_loop import RolloutRunner
from tapo.train.logprobs import pad_batch, response_logprobs

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = RolloutConfig(max_turns=3, max_response_tokens=120, max_new_tokens_per_turn=10)


def _prompts(tokenizer, n: int) -> list[list[int]]:
    """Prompts of different lengths."""
    return [tokenizer(f"Question {i}: " + "why " * (3 * i) + "?")["input_ids"] for i in range(n)]


def _rollout(engine: HFEngine, prompts: list[list[int]], greedy: bool = False, seed: int = 0):
    runner = RolloutRunner(engine, None, CONFIG)
    return runner.run(prompts, [None] * len(prompts), runner.sampling_params(seed=seed, greedy=greedy), frozenset())


def _full_forward_gaps(model, prompts, responses, logprobs) -> torch.Tensor:
    """|recorded - full recomputation| for every sampled token (None marks environment tokens)."""
    batch = pad_batch(prompts, responses, pad_id=0)
    with torch.no_grad():
        reference, _ = response_logprobs(model, batch)
    return torch.tensor(
        [
            abs(reference[i, t].item() - lp)
            for i, row in enumerate(logprobs)
            for t, lp in enumerate(row)
            if lp is not None
        ]
    )


def test_cached_rollout_logprobs_equal_a_full_forward_over_the_finished_sequence(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer, batch_size=8)
    prompts = _prompts(tokenizer, 3) * 2  # two samples per prompt
    trajectories = _rollout(engine, prompts, seed=5)
    assert all(len(t.turns) >= 2 for t in trajectories)  # multi-turn: the cache had something to reuse
    gaps = _full_forward_gaps(
        tiny_model, prompts, [t.response_ids for t in trajectories], [t.logprobs for t in trajectories]
    )
    assert len(gaps) == sum(sum(t.model_mask) for t in trajectories)
    assert gaps.mean() < 1e-4 and gaps.max() < 1e-4
    assert engine.stats.reused > 0
    # a prompt's two samples are prefilled once, then each turn only its new tokens
    uncached = HFEngine(tiny_model, tokenizer, batch_size=8, kv_reuse=False)
    _rollout(uncached, prompts, seed=5)
    assert engine.stats.prefill_per_sampled < uncached.stats.prefill_per_sampled / 2


def test_greedy_rollouts_are_the_same_with_and_without_the_cache(tiny_model, tokenizer):
    prompts = _prompts(tokenizer, 4)
    cached = _rollout(HFEngine(tiny_model, tokenizer, batch_size=4), prompts, greedy=True)
    full = _rollout(HFEngine(tiny_model, tokenizer, batch_size=4, kv_reuse=False), prompts, greedy=True)
    assert [t.response_ids for t in cached] == [t.response_ids for t in full]
    assert [t.model_mask for t in cached] == [t.model_mask for t in full]
    for a, b in zip(cached, full, strict=True):
        assert [x is None for x in a.logprobs] == [x is None for x in b.logprobs]
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True) if x is not None) < 1e-4


def test_a_prompts_samples_share_one_prefill(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer)
    prompt = _prompts(tokenizer, 2)[1]
    engine.generate([prompt] * 4, SamplingParams(max_new_tokens=3, seed=0))
    assert engine.stats.prefilled == len(prompt)


def test_caches_are_freed_and_do_not_grow_over_50_batches(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer, batch_size=4)
    runner = RolloutRunner(engine, None, RolloutConfig(max_turns=1, max_response_tokens=40, max_new_tokens_per_turn=4))
    prompts = _prompts(tokenizer, 2)
    for batch in range(50):
        runner.run(prompts, [None, None], runner.sampling_params(seed=batch), frozenset())
        assert engine.store.tokens == 0 and len(engine.store) == 0, batch
    assert engine.stats.reused > 0


def test_the_byte_cap_falls_back_to_a_full_prefill(tiny_model, tokenizer):
    prompts = _prompts(tokenizer, 4)
    config = tiny_model.config
    per_position = kv_position_bytes(config, torch.float32)
    cap = (max(len(p) for p in prompts) + 12) * per_position  # room for about one trajectory's context
    capped = HFEngine(tiny_model, tokenizer, batch_size=4, kv_cache_gib=cap / 1024**3)
    assert capped.store.max_bytes == cap
    stored: list[int] = []
    store = capped.store.store

    def watched(*args, **kwargs):
        store(*args, **kwargs)
        stored.append(capped.store.bytes)
        assert capped.store.bytes == capped.store.tokens * per_position

    capped.store.store = watched  # type: ignore[method-assign]
    cached = _rollout(capped, prompts, greedy=True)
    full = _rollout(HFEngine(tiny_model, tokenizer, batch_size=4, kv_reuse=False), prompts, greedy=True)
    assert capped.stats.evicted > 0 and max(stored) <= cap
    assert capped.stats.evicted_bytes == capped.stats.evicted_positions * per_position > 0
    metrics = capped.stats.metrics()
    assert metrics["kv/evicted_positions"] == capped.stats.evicted_positions and metrics["kv/sampled"] > 0
    assert [t.response_ids for t in cached] == [t.response_ids for t in full]
    gaps = _full_forward_gaps(tiny_model, prompts, [t.response_ids for t in cached], [t.logprobs for t in cached])
    assert gaps.max() < 1e-4


def test_the_cap_is_gib_or_a_share_of_available_memory():
    assert store_bytes(0.5, available=10 * 1024**3) == 512 * 1024**2
    assert store_bytes("auto", available=4 * 1024**3) == 512 * 1024**2  # an eighth of what is available
    assert store_bytes("auto", available=64 * 1024**3) == 1024**3  # at most 1 GiB
    assert position_bytes(layers=30, kv_heads=3, head_dim=64, dtype_bytes=4) == 46_080  # SmolLM2-135M, float32


def test_metrics_count_since_a_snapshot():
    stats = KVStats(prefilled=10, evicted=1, evicted_positions=5, evicted_bytes=500)
    before = stats.snapshot()
    stats.evicted_positions += 7
    assert stats.metrics(before)["kv/evicted_positions"] == 7.0 and stats.metrics(before)["kv/prefilled"] == 0.0
    assert stats.metrics()["kv/evicted_positions"] == 12.0


def test_concurrent_trajectories_of_different_lengths_through_the_batcher(tiny_model, tokenizer):
    """Rows of one batch start from different cached lengths and add suffixes of different lengths."""
    engine = HFEngine(tiny_model, tokenizer, batch_size=8)
    prompts = _prompts(tokenizer, 6)
    batches: list[int] = []
    generate = engine._batcher._generate

    def counted(batch_prompts, params, seeds):
        batches.append(len(batch_prompts))
        return generate(batch_prompts, params, seeds)

    engine._batcher._generate = counted

    async def trajectory(i: int) -> tuple[list[int], list[float | None]]:
        rng = random.Random(i)
        ids, logprobs = list(prompts[i]), []
        for turn in range(4):
            generation = await engine.agenerate(ids, SamplingParams(max_new_tokens=3 + i, seed=10 * i + turn))
            output = tokenizer(f" <response>{'x' * rng.randint(1, 30)}</response>", add_special_tokens=False)
            ids += generation.token_ids + output["input_ids"]
            logprobs += generation.logprobs + [None] * len(output["input_ids"])
            await asyncio.sleep(rng.uniform(0, 0.01))
        return ids, logprobs

    async def run():
        return await asyncio.gather(*(trajectory(i) for i in range(len(prompts))))

    results = asyncio.run(run())
    assert any(size > 1 for size in batches)
    responses = [ids[len(p) :] for p, (ids, _) in zip(prompts, results, strict=True)]
    gaps = _full_forward_gaps(tiny_model, prompts, responses, [lp for _, lp in results])
    assert gaps.mean() < 1e-4 and gaps.max() < 1e-4
    assert engine.stats.reused > 0


def test_new_weights_drop_the_cache_even_for_a_shared_model(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer)
    prompt = _prompts(tokenizer, 2)[1]
    first = engine.generate([prompt], SamplingParams(max_new_tokens=4, temperature=0.0))[0]
    with torch.no_grad():
        tiny_model.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    engine.update_weights(tiny_model.state_dict())  # the engine's own tensors: nothing to copy, the cache goes
    assert engine.store.tokens == 0
    context = prompt + first.token_ids
    second = engine.generate([context], SamplingParams(max_new_tokens=4, temperature=0.0))[0]
    gaps = _full_forward_gaps(tiny_model, [context], [second.token_ids], [second.logprobs])
    assert gaps.max() < 1e-4


def test_bf16_sampling_uses_a_bf16_copy_that_follows_the_trainer(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer, dtype="bfloat16")
    assert engine.model is not tiny_model and engine.model.dtype == torch.bfloat16
    assert tiny_model.dtype == torch.float32  # the trainer keeps float32 master weights
    with torch.no_grad():
        tiny_model.model.norm.weight.add_(0.5)
    engine.update_weights(tiny_model.state_dict())
    assert torch.equal(engine.model.model.norm.weight, tiny_model.model.norm.weight.to(torch.bfloat16))
    prompts = _prompts(tokenizer, 3)
    trajectories = _rollout(engine, prompts, seed=1)
    assert engine.stats.reused > 0
    gaps = _full_forward_gaps(
        tiny_model, prompts, [t.response_ids for t in trajectories], [t.logprobs for t in trajectories]
    )
    assert 0 < gaps.mean() < 0.05  # bf16 differs from the float32 learner, a little


def test_float32_on_a_float32_model_shares_the_trainers_weights(tiny_model, tokenizer):
    assert HFEngine(tiny_model, tokenizer, dtype="float32").model is tiny_model
    copied = HFEngine(tiny_model, tokenizer, own_copy=True).model
    assert copied is not tiny_model and copied.dtype == torch.float32


def test_bf16_sampling_turns_rollout_correction_on_by_default():
    from tapo.config import load_config
    from tapo.train.mismatch import resolve_correction

    assert resolve_correction(load_config(None, [])) == "none"  # the trainer's own float32 model samples
    assert resolve_correction(load_config(None, ["rollout.engine.dtype=bfloat16"])) == "token_tis"
    assert resolve_correction(load_config(None, ["rollout.engine.dtype=float32"])) == "none"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_head_projects_one_contiguous_column_per_row(tiny_model, tokenizer, dtype):
    """A prefill of several positions hands the output head only each row's last column, as a contiguous tensor:
    torch's CPU linear on the strided slice that ``logits_to_keep=1`` makes is slow, and in bf16 projects every
    column (docs/rollout.md)."""
    engine = HFEngine(tiny_model, tokenizer, batch_size=8, dtype=dtype)
    inputs = []
    handle = engine.model.get_output_embeddings().register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    try:
        engine.generate(_prompts(tokenizer, 4), SamplingParams(max_new_tokens=3, temperature=0.0))
    finally:
        handle.remove()
    assert len(inputs) == 3  # one prefill of the 4 prompts, then two decode steps
    assert all(x.shape[:2] == (4, 1) and x.is_contiguous() for x in inputs)
