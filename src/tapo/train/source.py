"""Where the trainer's trajectories come from: the :class:`RolloutSource` contract and its production
implementation, :class:`ToolRolloutSource` (engine + tools + multi-turn rollout + reward).

Prompts are rendered once per example and cached (the chat template is not free on CPU). Each call
samples with a seed derived from the run seed, the step, the process and the generation round the trainer
counts, so the n samples of a prompt differ, processes never repeat each other, and a resumed run draws
what the killed run would have drawn.

Every round of a run samples on one long-lived event loop, the one the tools' async clients (connection pools,
semaphores) belong to; :meth:`ToolRolloutSource.close` closes the tools on it, then stops it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tapo.config.schema import TapoConfig
from tapo.data.schema import Example
from tapo.engines.base import GenerationEngine, SamplingParams
from tapo.engines.kv_cache import KVStats
from tapo.io.event_loop import EventLoopThread
from tapo.records import Trajectory

ScoreFn = Callable[[list[Trajectory]], None]
Group = list[Trajectory]


class RolloutSource(Protocol):
    """Turns examples into scored groups of trajectories (one group of ``group_size`` per example)."""

    def sample(
        self, examples: Sequence[Example], step: int, round: int, on_done: Callable[[], None] | None = None
    ) -> list[Group]:
        """Scored groups for ``examples``; ``round`` counts the dynamic-sampling rounds of ``step`` from 0;
        ``on_done()`` is called as each trajectory finishes (progress)."""
        ...

    def sync(self, state_dict: dict[str, Any]) -> None:
        """Load the new policy weights (the full state dict, on every process) into the generation engine."""
        ...

    def engine_metrics(self) -> dict[str, float]:
        """The engine's counters since the last call (``kv/*`` of the transformers engine's KV store), or none."""
        ...


def sampling_seed(run_seed: int, step: int, process_index: int, round: int) -> int:
    """A reproducible seed per (run, step, process, round): stable across processes and Python runs (no hash())."""
    return (((run_seed * 1_000_003 + step) * 1_009 + process_index) * 10_007 + round) % 2**31


class ToolRolloutSource:
    """Groups of ``trainer.group_size`` trajectories per example, scored by ``score`` (default: the config's
    :class:`~tapo.rewards.compute.RewardFunction`). ``engine`` overrides the one ``config.rollout`` names.

    ``own_engine_copy``: the transformers engine generates with its own copy of ``model`` instead of the
    trainer's object. Needed when the trainer shards its model (FSDP, ZeRO-3): a sharded module holds one shard
    per process and runs collectives in ``forward``. The copy costs one full model per process; it is updated
    after every step from the full state dict. (A transformers engine sampling in another dtype,
    ``rollout.engine.dtype``, always has its own copy, made once in that dtype.)"""

    def __init__(
        self,
        config: TapoConfig,
        model: Any,
        tokenizer: Any,
        score: ScoreFn | None = None,
        process_index: int = 0,
        engine: GenerationEngine | None = None,
        own_engine_copy: bool = False,
    ) -> None:
        from tapo.prompts.templates import allowed_tools
        from tapo.rollout.agent_loop import RolloutRunner
        from tapo.tools.catalog import resolve_tools

        self.config = config
        self.tokenizer = tokenizer
        if engine is None:
            from tapo.engines.factory import build_engine

            engine = build_engine(config.rollout, model, tokenizer, own_copy=own_engine_copy)
        self.engine = engine
        catalog = resolve_tools(config.tools)  # the run's tools, a user's and MCP servers' with TAPO's
        self.protocol = catalog.protocol
        self.allowed = allowed_tools(config.data.template, self.protocol) & catalog.enabled
        # no sandbox or index is started for a tool-less run (the no-tools baseline, benchmarks)
        self.tools = catalog.build(self.allowed) if self.allowed else None
        self.loop = EventLoopThread("tapo-rollout")
        self.runner = RolloutRunner(self.engine, self.tools, config.rollout, loop=self.loop, protocol=self.protocol)
        self._reward = None
        if score is None:
            from tapo.rewards.compute import RewardFunction

            self._reward = RewardFunction(config.reward, config.rollout.max_response_tokens, self.protocol)
            score = self._reward.score_trajectories
        self.score = score
        self._prompts: dict[str, list[int]] = {}
        self.process_index = process_index
        self._counted = KVStats()

    def prompt(self, example: Example) -> list[int]:
        """The example's prompt ids (rendered once, cut to ``data.max_prompt_tokens``): every member of its group
        starts from these, a guidance expert too."""
        if example.id not in self._prompts:
            from tapo.prompts.templates import render_prompt

            ids = render_prompt(self.tokenizer, example.question, self.config.data.template, self.protocol)
            self._prompts[example.id] = ids[-self.config.data.max_prompt_tokens :]
        return self._prompts[example.id]

    def requests(
        self, examples: Sequence[Example], step: int, round: int
    ) -> tuple[list[list[int]], list[Example | None], SamplingParams]:
        """The rollout's inputs for ``examples``: each prompt ``group_size`` times, its example, and the sampling
        parameters seeded for (``step``, ``round``)."""
        n = self.config.trainer.group_size
        prompts = [self.prompt(ex) for ex in examples for _ in range(n)]
        repeated: list[Example | None] = [ex for ex in examples for _ in range(n)]
        seed = sampling_seed(self.config.run.seed, step, self.process_index, round)
        return prompts, repeated, self.runner.sampling_params(seed=seed)

    def grouped(self, trajs: list[Trajectory]) -> list[Group]:
        """Score ``trajs`` (in the calling thread: math-verify's time limit needs the main one) and cut them into
        groups of ``group_size``."""
        self.score(trajs)
        n = self.config.trainer.group_size
        return [trajs[i : i + n] for i in range(0, len(trajs), n)]

    def sample(
        self, examples: Sequence[Example], step: int, round: int, on_done: Callable[[], None] | None = None
    ) -> list[Group]:
        prompts, repeated, params = self.requests(examples, step, round)
        each = (lambda _: on_done()) if on_done is not None else None
        # synchronous: the engine holds the weights of ``step`` updates throughout
        trajs = self.runner.run(prompts, repeated, params, self.allowed, on_done=each, version=step)
        return self.grouped(trajs)

    def sync(self, state_dict: dict[str, Any]) -> None:
        """Load the full new weights (every process has them: :mod:`tapo.train.full_weights`) into the engine; an empty
        or partial state dict is the engine's error, never a skip.

        A vLLM server is one engine for all processes: only the main process pushes to it.
        """
        if self.config.rollout.engine.kind != "vllm-server" or self.process_index == 0:
            self.engine.update_weights(state_dict)

    def engine_metrics(self) -> dict[str, float]:
        """``kv/*``: the transformers engine's KV-store counters (prefilled, reused, evicted positions and bytes)
        since the last call; none for engines without a store."""
        stats = getattr(self.engine, "stats", None)
        if not isinstance(stats, KVStats):
            return {}
        metrics = stats.metrics(self._counted)
        self._counted = stats.snapshot()
        return metrics

    def close(self) -> None:
        """Close the tools on the loop their clients live on, then the loop, the reward and the engine (a vLLM
        engine's processes would otherwise outlive the run and keep the process from exiting)."""
        if self.tools is not None and not self.loop.closed:
            self.loop.run(self.tools.aclose())
        self.loop.close()
        if self._reward is not None:
            self._reward.close()
        self.engine.close()
