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

BatchFn = Callable[[list[list[int]], SamplingParams], list[Generation]]

Request = tuple[list[int], SamplingParams, "asyncio.Future[Generation]"]


class AsyncBatcher:
    def __init__(self, generate: BatchFn, max_batch: int) -> None:
        self._generate = generate
        self._max_batch = max_batch
        self._pending: dict[SamplingParams, list[Request]] = {}
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, prompt: list[int], params: SamplingParams) -> Generation:
        future: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()
        # The seed is not part of the key: one batch shares one RNG, seeded by its first request.
        self._pending.setdefault(replace(params, seed=None), []).append((prompt, params, future))
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
            params = batch[0][1]
            try:
                results = await asyncio.to_thread(self._generate, [prompt for prompt, _, _ in batch], params)
            except Exception as error:  # the callers see the engine's error, the worker goes on
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
