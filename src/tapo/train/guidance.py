"""The trainer's guidance: in a sampled group with no right answer, one member is replaced by an expert trajectory,
the question's TAPO-mini oracle plan replayed through the run's real tools (as the warm start's demonstrations are,
:mod:`tapo.rollout.oracle`) and scored by the run's real reward. Which groups, and the loss the expert gets, are
pure functions in :mod:`tapo.algo.guidance`; this module makes the expert and puts it in.

Only a replay that is a success (it followed its plan, found its facts, answered right) is injected: a failed expert
would leave the group constant, teaching nothing. A replay depends on the question alone (scripted text, greedy,
the same tools), so each question's is made once and kept. With several processes every process injects into the
gathered groups, each with its own (identical) replay, so all see the same batch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from tapo.algo.guidance import groups_to_guide
from tapo.config.schema import GuidanceConfig
from tapo.data.schema import Example
from tapo.records import Trajectory
from tapo.rollout.oracle import plan_turns, replay_plans, unusable
from tapo.train.source import Group, ToolRolloutSource


@dataclass
class GuidanceTally:
    """One training step's guidance, over all its generation rounds: groups with no success seen, experts put in,
    and groups left without one because their question's replay is unusable (no plan, not a success)."""

    failed_groups: int = 0
    injected: int = 0
    unavailable: int = 0

    def metrics(self) -> dict[str, float]:
        return {
            "guidance/failed_groups": float(self.failed_groups),
            "guidance/injected": float(self.injected),
            "guidance/unavailable": float(self.unavailable),
        }


class ExpertGuide:
    """Injects expert members into the groups of ``source`` (its prompts, tools, event loop and reward)."""

    def __init__(self, source: ToolRolloutSource, settings: GuidanceConfig) -> None:
        if source.tools is None:
            raise ValueError("trainer.guidance.enabled needs tools: the expert replays its plan through them")
        self.source = source
        self.settings = settings
        self._replays: dict[str, Trajectory | None] = {}  # question id -> its successful replay, None if unusable

    def _replay(self, examples: list[Example]) -> None:
        """Replay and score the plans of ``examples`` not yet replayed; keep each success, None for the rest. A replay
        in which a tool failed (a time-out on a loaded machine) is not kept either way: it is tried again when its
        question next needs an expert."""
        source = self.source
        todo = {ex.id: ex for ex in examples if ex.id not in self._replays}
        scripted = [(ex, plan_turns(ex, source.allowed)) for ex in todo.values()]
        ready = [(ex, turns) for ex, turns in scripted if turns is not None]
        self._replays.update({ex.id: None for ex, turns in scripted if turns is None})
        if not ready:
            return
        trajectories = replay_plans(
            source.tokenizer, source.tools, source.config.rollout, source.loop,
            [source.prompt(ex) for ex, _ in ready], [ex for ex, _ in ready], [turns for _, turns in ready],
            source.allowed, source.protocol,
        )  # fmt: skip
        source.score(trajectories)
        for trajectory, (example, _) in zip(trajectories, ready, strict=True):
            if not trajectory.tool_failures:
                self._replays[example.id] = trajectory if unusable(trajectory, example) is None else None

    def inject(self, groups: list[Group], dropped: list[bool], tally: GuidanceTally) -> tuple[list[Group], list[bool]]:
        """``groups`` with the last member of each group without a right answer replaced by its question's expert,
        the first ones up to ``max_per_step`` in the step ``tally`` counts, and the filter's ``dropped`` flags with
        those groups kept (an expert's success among failures is never a constant group). The groups given are left
        as they are: they are what the policy sampled, and what skipping and the informative share count."""
        if not groups:
            return groups, dropped
        acc = torch.tensor([[float(t.scored.acc) for t in g] for g in groups])  # [groups, group_size]
        tally.failed_groups += len(groups_to_guide(acc, len(groups)))
        chosen = groups_to_guide(acc, self.settings.max_per_step - tally.injected)
        examples = {i: ex for i in chosen if (ex := groups[i][0].example) is not None}
        self._replay(list(examples.values()))
        out, keep = list(groups), list(dropped)
        for index in chosen:
            expert = self._replays.get(examples[index].id) if index in examples else None
            if expert is None:
                tally.unavailable += 1
            else:
                out[index] = [*groups[index][:-1], copy.deepcopy(expert)]
                keep[index] = False
                tally.injected += 1
        return out, keep
