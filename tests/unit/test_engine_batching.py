"""The async micro-batcher: concurrent requests with different token budgets still form one batch, each with its
own seed."""

from __future__ import annotations

import asyncio

from tapo.engines.base import SamplingParams
from tapo.engines.batching import AsyncBatcher
from tapo.engines.scripted import ScriptedEngine


def test_requests_with_different_budgets_share_one_batch_and_keep_their_own_budget(tokenizer):
    engine = ScriptedEngine(tokenizer, ["one two three four five six seven eight nine ten"])
    batches: list[tuple[int, int, list[int | None]]] = []

    def generate(prompts, params, seeds):
        batches.append((len(prompts), params.max_new_tokens, seeds))
        return engine.generate(prompts, params)

    batcher = AsyncBatcher(generate, max_batch=8)
    budgets = [2, 5, 50]
    prompts = [[i + 1, 2, 3] for i in range(len(budgets))]

    async def run():
        return await asyncio.gather(
            *(
                batcher.submit(p, SamplingParams(max_new_tokens=b, seed=i))
                for i, (p, b) in enumerate(zip(prompts, budgets, strict=True))
            )
        )

    results = asyncio.run(run())
    assert batches == [(3, 50, [0, 1, 2])]  # one batch; every request keeps its own seed
    full = len(tokenizer("one two three four five six seven eight nine ten", add_special_tokens=False)["input_ids"])
    assert [len(r.token_ids) for r in results] == [2, 5, full + 1]  # + EOS
    assert [r.finish_reason for r in results] == ["length", "length", "eos"]
    assert all(len(r.logprobs) == len(r.token_ids) for r in results)
