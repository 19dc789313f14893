"""An engine whose weights are replaced while trajectories are in flight, every sampled token tagged with the
policy version that sampled it: what asynchronous training's producer samples through (tapo.train.producer).

Two kinds of engine:

* one that loads weights between two of its own forwards and reports per-token versions (the transformers
  engine: ``loads_while_generating``): a push goes straight in; a turn being generated continues under the new
  weights from the next token on.
* any other (vLLM in-process, a vLLM server, a remote OpenAI-compatible server): a push waits until no call is in
  flight, and no call starts while it waits (so pushes are not starved); a trajectory then continues under the new
  weights from its next turn. Whether vLLM can take new weights in the middle of a request has not been tested
  here, so it is never asked to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tapo.engines.base import Generation, GenerationEngine, SamplingParams


class VersionedEngine:
    """``inner`` behind a weight-push gate; ``version`` is the policy version of the weights it samples with."""

    def __init__(self, inner: GenerationEngine, version: int) -> None:
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.live = bool(getattr(inner, "loads_while_generating", False))
        self.version = version
        if self.live:
            inner.version = version  # type: ignore[attr-defined]
        self._calls = 0  # calls in flight (gated engines)
        self._pushing = False
        self._gate = asyncio.Condition()  # bound to the run's loop on first use

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        """One call; its tokens carry the version of the weights that sampled them (``Generation.versions``)."""
        if self.live:
            return await self.inner.agenerate(prompt, params)
        async with self._gate:
            await self._gate.wait_for(lambda: not self._pushing)
            self._calls += 1
            version = self.version
        try:
            generation = await self.inner.agenerate(prompt, params)
        finally:
            async with self._gate:
                self._calls -= 1
                self._gate.notify_all()
        return replace(generation, versions=[version] * len(generation.token_ids))

    async def apush(self, state_dict: dict[str, Any], version: int) -> None:
        """Load the weights of policy ``version`` (see the module's docstring for when they take effect)."""
        if self.live:
            await asyncio.to_thread(self.inner.update_weights, state_dict, version)  # type: ignore[call-arg]
            self.version = version
            return
        async with self._gate:
            self._pushing = True
            await self._gate.wait_for(lambda: self._calls == 0)
        try:
            await asyncio.to_thread(self.inner.update_weights, state_dict)
            self.version = version
        finally:
            async with self._gate:
                self._pushing = False
                self._gate.notify_all()

    def release(self, ids: Sequence[int]) -> None:
        self.inner.release(ids)

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        """Pushes go through :meth:`apush`, which knows the version and when the load may happen."""
        raise TypeError("a VersionedEngine takes weights through apush(state_dict, version) on its event loop")

    def close(self) -> None:
        """The inner engine belongs to the rollout source, which closes it."""
