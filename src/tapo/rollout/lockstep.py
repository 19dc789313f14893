"""Model turns in lockstep (``rollout.lockstep``): a batch's next model turns go to the engine together, in
trajectory order, once every unfinished trajectory has asked for one.

Free-running trajectories reach the engine when their tool calls return, so which requests share an engine batch
depends on tool latency and machine load. Each request already samples from a random stream of its own
(docs/rollout.md), but the arithmetic of a batch depends on its shape: in bf16 another batch moves a logit by a
rounding step, and a draw near a boundary, or a greedy near-tie, then picks another token. Released together and
in order, the requests of a turn form the same batches on every run, so a seeded rollout (and a greedy evaluation)
is the same whatever the load. The price: the engine waits for the turn's slowest tool call.
"""

from __future__ import annotations

import asyncio


class TurnBarrier:
    """Holds each trajectory's request for a model turn until every trajectory still running has made one, then
    lets them all go in trajectory order (their requests reach the engine in that order, in one loop tick)."""

    def __init__(self, running: int) -> None:
        self._running = running
        self._waiting: dict[int, asyncio.Future[None]] = {}

    async def turn(self, index: int) -> None:
        """Wait until trajectory ``index``'s model turn may go to the engine."""
        released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[index] = released
        self._release_when_complete()
        try:
            await released
        except asyncio.CancelledError:
            self._waiting.pop(index, None)  # its task's finish() follows; the others must not count it as waiting
            raise

    def finish(self) -> None:
        """A trajectory ended (or failed): the others no longer wait for it."""
        self._running -= 1
        self._release_when_complete()

    def _release_when_complete(self) -> None:
        if not self._waiting or len(self._waiting) < self._running:
            return
        # Resolved from the loop, in index order, they wake their tasks in that order (callbacks run first in, first
        # out); resolved here, the caller's own future would be done already and its task would go first.
        loop = asyncio.get_running_loop()
        for index in sorted(self._waiting):
            loop.call_soon(_release, self._waiting.pop(index))


def _release(released: asyncio.Future[None]) -> None:
    if not released.done():  # a trajectory cancelled since is left as it is
        released.set_result(None)
