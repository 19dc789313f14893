"""Protocol demonstrations for the supervised warm start, made by replaying oracle plans through the real rollout.

SmolLM2-135M does not follow the tag protocol zero-shot, so TAPO RL starts from a short supervised warm start.
Its demonstrations are produced by the same code path as RL trajectories: a ``ScriptedEngine`` writes the
model's part of each turn from the question's oracle plan (``meta.plan`` of TAPO-mini rows), and the real
rollout loop calls the real tools and inserts their outputs with loss mask 0. A demonstration is kept only when
every search actually surfaced the fact it was meant to find and the final answer is scored correct, so the warm
start never teaches the model to ignore what its tools said.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tapo.config.schema import RolloutConfig
from tapo.data.schema import Example
from tapo.io.event_loop import EventLoopThread
from tapo.prompts.templates import allowed_tools, render_prompt
from tapo.records import Trajectory
from tapo.rewards.compute import RewardFunction
from tapo.rollout.oracle import plan_turns, replay_plans, unusable
from tapo.tools.registry import ToolRegistry

DemoStats = dict[str, int]


@dataclass
class DemoBuilder:
    """Replays oracle plans in batches through the real tools, with a scripted engine per batch; every batch runs
    on ``loop``, the event loop the tools' clients live on (close the tools there)."""

    tokenizer: Any
    tools: ToolRegistry
    rollout: RolloutConfig
    reward: RewardFunction
    template: str
    batch_size: int = 64
    loop: EventLoopThread = field(default_factory=EventLoopThread)

    def _batches(self, examples: list[Example]) -> Iterator[list[Example]]:
        for start in range(0, len(examples), self.batch_size):
            yield examples[start : start + self.batch_size]

    def build(self, examples: list[Example], stats: DemoStats) -> list[Trajectory]:
        allowed = allowed_tools(self.template)
        kept: list[Trajectory] = []
        for batch in self._batches(examples):
            scripted = [(ex, plan_turns(ex, allowed)) for ex in batch]
            stats["no_plan"] = stats.get("no_plan", 0) + sum(turns is None for _, turns in scripted)
            ready = [(ex, turns) for ex, turns in scripted if turns is not None]
            if not ready:
                continue
            prompts = [render_prompt(self.tokenizer, ex.question, self.template) for ex, _ in ready]
            examples_ready = [ex for ex, _ in ready]
            trajectories = replay_plans(
                self.tokenizer, self.tools, self.rollout, self.loop, prompts, examples_ready,
                [turns for _, turns in ready], allowed,
            )  # fmt: skip
            self.reward.score_trajectories(trajectories)
            for trajectory, example in zip(trajectories, examples_ready, strict=True):
                why = unusable(trajectory, example)
                if why is None:
                    kept.append(trajectory)
                else:
                    stats[why] = stats.get(why, 0) + 1
        stats["kept"] = len(kept)
        return kept
