"""Asynchronous RL (``trainer.max_staleness`` > 0): a producer keeps sampling rounds of groups on the run's event
loop while the trainer updates, within a staleness bound.

:class:`AsyncRolloutSource` is a :class:`~tapo.train.source.RolloutSource`, so the trainer's loop (dynamic sampling
included) is the synchronous one: ``collect`` takes prompts from the trainer's cursor and asks for their groups; the
producer has sampled them ahead from its own copy of that cursor (the cursor is deterministic, so both draw the same
prompts in the same order) and hands over the oldest round. What the trainer's cursor has taken is what was trained
on: the checkpoint stores it, and a resumed run's producer starts from there, so rounds in flight at a checkpoint are
re-sampled (never saved, never lost, never trained on twice).

Versions: the policy version is the number of updates the weights have seen (the trainer's step counter). The
producer starts a round only while fewer than ``max_staleness`` rounds wait to be taken: the trainer takes at least
one round per step, so a round started under version v is taken by a step whose weights are at most
v + max_staleness. A group whose oldest token is older than that anyway is dropped and counted (a safety net;
``async/dropped_trajectories``). Weights are pushed after every update through
:class:`~tapo.engines.versioned.VersionedEngine`: trajectories in flight continue under them (partial rollouts),
each token tagged with the version that sampled it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tapo.config.schema import TapoConfig
from tapo.data.schema import Example
from tapo.engines.versioned import VersionedEngine
from tapo.records import Trajectory
from tapo.rollout.agent_loop import RolloutRunner
from tapo.train.cursor import PromptCursor
from tapo.train.source import Group, ToolRolloutSource


@dataclass
class Round:
    """``prompts_per_step`` prompts sampled together: the unit the trainer takes (one dynamic-sampling round)."""

    examples: list[Example]
    task: asyncio.Task[list[Trajectory]]
    finished: int = 0
    watcher: Callable[[], None] | None = None  # the trainer's progress, while it waits for this round

    def done_one(self, _: Trajectory) -> None:
        self.finished += 1
        if self.watcher is not None:
            self.watcher()


@dataclass
class AsyncCounters:
    """What the step's ``async/*`` metrics are computed from (reset by ``AsyncRolloutSource.engine_metrics``)."""

    staleness: Counter[int] = field(default_factory=Counter)  # trajectories taken, by versions behind
    tokens: Counter[int] = field(default_factory=Counter)  # model tokens taken, by versions behind
    dropped: int = 0  # trajectories of groups beyond the bound
    producer_idle_s: float = 0.0  # the producer waited for the trainer (the bound held it back)
    trainer_wait_s: float = 0.0  # the trainer waited for rounds


def staleness_metrics(counters: AsyncCounters, bound: int, ahead: int) -> dict[str, float]:
    """The step's ``async/*`` row entries (see docs/training.md)."""
    taken = sum(counters.staleness.values())
    row = {
        "async/staleness_mean": sum(k * n for k, n in counters.staleness.items()) / max(1, taken),
        **{f"async/staleness_{k}": float(counters.staleness[k]) for k in range(bound + 1)},
        **{f"async/tokens_lag_{k}": float(counters.tokens[k]) for k in range(bound + 1)},
        "async/dropped_trajectories": float(counters.dropped),
        "async/producer_idle_s": counters.producer_idle_s,
        "async/trainer_wait_s": counters.trainer_wait_s,
        "async/rounds_ahead": float(ahead),
    }
    return row


class AsyncRolloutSource:
    """The producer over ``inner``'s engine, tools and reward; ``cursor`` is the trainer's (what it has consumed)."""

    def __init__(
        self,
        inner: ToolRolloutSource,
        examples: Sequence[Example],
        cursor: PromptCursor,
        config: TapoConfig,
        processes: int,
        trainer_model: Any,
    ) -> None:
        if processes > 1:
            raise ValueError(
                f"trainer.max_staleness={config.trainer.max_staleness}: asynchronous training runs on one process "
                f"only (this run has {processes}); set trainer.max_staleness=0"
            )
        if getattr(inner.engine, "model", None) is trainer_model:
            raise ValueError(
                "trainer.max_staleness > 0 needs an engine with its own copy of the weights: this one samples from "
                "the model the trainer updates in place"
            )
        self.inner = inner
        self.examples = list(examples)
        self.cursor = cursor
        self.bound = config.trainer.max_staleness
        self.per_round = config.trainer.prompts_per_step
        self.loop = inner.loop
        self.engine: VersionedEngine | None = None  # made when the producer starts, at the trainer's first round
        self._producer: asyncio.Task[None] | None = None
        self._rounds: asyncio.Queue[Round] = asyncio.Queue()
        self._room = asyncio.Condition()
        self._waiting = 0  # rounds started and not yet taken
        self.counters = AsyncCounters()

    # ---- RolloutSource --------------------------------------------------------------------------------------
    def sample(
        self, examples: Sequence[Example], step: int, round: int, on_done: Callable[[], None] | None = None
    ) -> list[Group]:
        """The oldest round, which holds ``examples`` (the trainer's cursor just took them), scored, without the
        groups sampled more than ``max_staleness`` versions before ``step``."""
        if self._producer is None:
            self._start(step, examples)
        started = time.perf_counter()
        taken, trajs = self.loop.run(self._take(on_done))
        self.counters.trainer_wait_s += time.perf_counter() - started
        if [ex.id for ex in taken] != [ex.id for ex in examples]:
            raise RuntimeError(
                "the producer sampled other prompts than the trainer's cursor took: the cursor and its copy diverged"
            )
        return [group for group in self.inner.grouped(trajs) if self._fresh(group, step)]

    def sync(self, state_dict: dict[str, Any]) -> None:
        """Push the weights of the next version (the trainer pushes after each update); before the producer starts
        (a resumed run's checkpoint weights) they are loaded directly, nothing being in flight."""
        if self.engine is None:
            self.inner.sync(state_dict)
            return
        self.loop.run(self.engine.apush(state_dict, self.engine.version + 1))

    def engine_metrics(self) -> dict[str, float]:
        """The engine's counters and the ``async/*`` metrics since the last call."""
        row = {**self.inner.engine_metrics(), **staleness_metrics(self.counters, self.bound, self._waiting)}
        self.counters = AsyncCounters()
        return row

    def close(self) -> None:
        """Stop the producer and cancel the rounds in flight, then close the inner source (tools, loop, engine)."""
        if self._producer is not None and not self.loop.closed:
            self.loop.run(self._stop())
        self.inner.close()

    # ---- the producer ---------------------------------------------------------------------------------------
    def _start(self, step: int, first: Sequence[Example]) -> None:
        """Start producing at version ``step``: the round the trainer just took, then on from its cursor's copy."""
        self.engine = VersionedEngine(self.inner.engine, step)
        runner = self.inner.runner
        runner = RolloutRunner(self.engine, runner.tools, runner.config, loop=self.loop, protocol=runner.protocol)
        ahead = dataclasses.replace(self.cursor)  # the trainer's cursor has just taken ``first``
        self._producer = self.loop.run(self._spawn(self._produce(runner, ahead, list(first))))

    @staticmethod
    async def _spawn(coro: Any) -> asyncio.Task[None]:
        return asyncio.create_task(coro)

    async def _produce(self, runner: RolloutRunner, ahead: PromptCursor, first: list[Example]) -> None:
        """Start ``first`` at once (the trainer waits for it), then rounds while fewer than ``max_staleness`` wait to
        be taken. A round's seed follows its place in the prompt order, so a resumed run seeds as the killed run."""
        self._waiting += 1
        await self._rounds.put(self._round(runner, first, ahead.consumed // self.per_round - 1))
        while True:
            async with self._room:
                idle = time.perf_counter()
                await self._room.wait_for(lambda: self._waiting < self.bound)
                self.counters.producer_idle_s += time.perf_counter() - idle
                self._waiting += 1
            serial = ahead.consumed // self.per_round
            examples = [self.examples[i] for i in ahead.take(self.per_round)]
            await self._rounds.put(self._round(runner, examples, serial))

    def _round(self, runner: RolloutRunner, examples: list[Example], serial: int) -> Round:
        assert self.engine is not None
        prompts, repeated, params = self.inner.requests(examples, serial, 0)
        version = self.engine.version
        holder: list[Round] = []

        def done(traj: Trajectory) -> None:
            holder[0].done_one(traj)

        coro = runner.arun(prompts, repeated, params, self.inner.allowed, on_done=done, version=version)
        holder.append(Round(examples, asyncio.create_task(coro)))
        return holder[0]

    async def _take(self, on_done: Callable[[], None] | None) -> tuple[list[Example], list[Trajectory]]:
        """The oldest round once it is done (reporting its trajectories to ``on_done`` as they finish)."""
        round = await self._rounds.get()
        if on_done is not None:
            for _ in range(round.finished):
                on_done()
            round.watcher = on_done
        trajs = await round.task
        async with self._room:
            self._waiting -= 1
            self._room.notify_all()
        return round.examples, trajs

    def _fresh(self, group: Group, step: int) -> bool:
        """Count the group's staleness and tokens per version lag; False (and counted as dropped) beyond the bound."""
        lags = [step - traj.policy_version for traj in group]
        if max(lags) > self.bound:
            self.counters.dropped += len(group)
            return False
        for traj, lag in zip(group, lags, strict=True):
            self.counters.staleness[lag] += 1
            for version, in_model in zip(traj.token_versions, traj.model_mask, strict=True):
                if in_model:
                    self.counters.tokens[step - version] += 1
        return True

    async def _stop(self) -> None:
        tasks = [self._producer] if self._producer is not None else []
        while not self._rounds.empty():
            tasks.append(self._rounds.get_nowait().task)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
