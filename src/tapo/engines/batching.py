"""Micro-batching for engines whose native call is a batch: concurrent ``agenerate`` calls become one batch.

The rollout drives each trajectory as its own asyncio task; with the transformers backend those tasks'
requests are gathered here (grouped by sampling parameters, up to ``max_batch``) and run as one
``generate`` call in a worker thread, so tool calls of other trajectories keep running meanwhile.
Requests that arrive while a batch is running form the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from tapo.engines.base import Generation, SamplingParams

# (prompts, shared sampling parameters, each request's own seed) -> one generation per prompt
BatchFn = Callable[[list[list[int]], SamplingParams, list[int | None]], list[Generation]]

Request = tuple[list[int], SamplingParams, "asyncio.Future[Generation]"]


class AsyncBatcher:
    def __init__(self, generate: BatchFn, max_batch: int) -> None:
        self._generate = generate
        self._max_batch = max_batch
        self._pending: dict[SamplingParams, list[Request]] = {}
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, prompt: list[int], params: SamplingParams) -> Generation:
        future: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()
        # Neither the seed nor the token budget is part of the key: each request samples with its own seed (which
        # batch it lands in depends on arrival time, so a shared random stream would make a seeded run depend on
        # tool latency and load), and a batch runs to the largest budget; each result is then cut to its own
        # budget. (The rollout gives every trajectory the room it has left, so keying on the budget would split
        # batches into singletons.)
        self._pending.setdefault(replace(params, seed=None, max_new_tokens=0), []).append((prompt, params, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let every task that is ready enqueue its request first
            key = next(iter(self._pending))
            batch, rest = self._pending[key][: self._max_batch], self._pending[key][self._max_batch :]
            if rest:
                self._pending[key] = rest
            else:
                del self._pending[key]
            params = replace(batch[0][1], max_new_tokens=max(p.max_new_tokens for _, p, _ in batch))
            try:
                prompts, seeds = [prompt for prompt, _, _ in batch], [own.seed for _, own, _ in batch]
                results = await asyncio.to_thread(self._generate, prompts, params, seeds)
            except Exception as error:  # the callers see the engine's error, the worker goes on
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, own, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(_within_budget(result, own.max_new_tokens))


def _within_budget(generation: Generation, budget: int) -> Generation:
    """The generation as a request with ``budget`` new tokens would have ended: cut there, by length."""
    if len(generation.token_ids) <= budget:
        return generation
    logprobs = generation.logprobs[:budget] if generation.logprobs is not None else None
    versions = generation.versions[:budget] if generation.versions is not None else None
    return replace(
        generation,
        token_ids=generation.token_ids[:budget],
        finish_reason="length",
        logprobs=logprobs,
        stop=None,
        versions=versions,
    )
