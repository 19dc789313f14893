"""Which prompts a step rolls out: the data cursor's next ones, less those GRESO predicts to give a constant group.

:class:`PromptHistory` keeps, per training prompt (by example id), the outcomes of its latest groups (mixed, all
right, all wrong, with the step), per kind the outcomes of its latest groups, and the two exploration
probabilities; :class:`PromptDrawer` draws from the cursor one prompt at a time and skips with the probability of
:func:`tapo.algo.prompt_skipping.skip_probability`, until the round has its prompts. A skipped prompt uses no
rollout and is not recorded: the cursor moves on, and the next epoch offers it again. Decisions come from a
``Random`` seeded by the run seed, the step and the round, and every process holds the same history (groups are
gathered before they are recorded), so every process skips the same prompts and a resumed run the same as the
killed one would have (the history is in the checkpoint's trainer state).

With skipping off the drawer is the cursor: ``take`` returns ``cursor.take(count)`` and nothing is kept.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tapo.algo.prompt_skipping import (
    ALL_RIGHT,
    ALL_WRONG,
    CONSTANT_OUTCOMES,
    adapt_explore,
    constant_streak,
    group_outcome,
    kind_prior,
    skip_probability,
)
from tapo.config.schema import SkipConstantConfig
from tapo.data.kinds import kind_of
from tapo.data.schema import Example
from tapo.train.cursor import PromptCursor
from tapo.train.source import Group

STATE_KEY = "prompt_history"


@dataclass
class PromptHistory:
    """Outcomes per prompt and per kind, and the exploration probability of each constant outcome."""

    config: SkipConstantConfig
    prompts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # example id -> [(step, outcome)]
    kinds: dict[str, list[str]] = field(default_factory=dict)  # kind -> latest outcomes, oldest first
    explore: dict[str, float] = field(default_factory=dict)  # ALL_RIGHT / ALL_WRONG -> p

    def __post_init__(self) -> None:
        self.explore = self.explore or dict.fromkeys(CONSTANT_OUTCOMES, self.config.explore_init)

    def skip_probability(self, example: Example) -> float:
        """From the prompt's own streak; a prompt never sampled takes its kind's prior."""
        own = self.prompts.get(example.id)
        if own:
            outcome, streak = constant_streak([o for _, o in own])
        else:
            outcome, streak = kind_prior(self.kinds.get(kind_of(example), []), self.config.kind_window)
        return skip_probability(outcome, streak, self.explore)

    def record(self, example: Example, outcome: str, step: int) -> None:
        own = self.prompts.setdefault(example.id, [])
        own.append((step, outcome))
        del own[: -self.config.history]
        if self.config.kind_window:
            recent = self.kinds.setdefault(kind_of(example), [])
            recent.append(outcome)
            del recent[: -self.config.kind_window]

    def adapt(self, outcomes: Sequence[str]) -> None:
        """Move each outcome's p toward its target share of the step's rolled-out groups ``outcomes``."""
        if not outcomes:
            return
        targets = {ALL_RIGHT: self.config.target_all_right, ALL_WRONG: self.config.target_all_wrong}
        for outcome, target in targets.items():
            share = sum(o == outcome for o in outcomes) / len(outcomes)
            self.explore[outcome] = adapt_explore(
                self.explore[outcome], share, target, self.config.explore_step, self.config.explore_min
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "prompts": {k: [list(pair) for pair in v] for k, v in self.prompts.items()},
            "kinds": self.kinds,
            "explore": self.explore,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts = {k: [(int(s), str(o)) for s, o in v] for k, v in state["prompts"].items()}
        self.kinds = {k: [str(o) for o in v] for k, v in state["kinds"].items()}
        self.explore = {k: float(v) for k, v in state["explore"].items()}


class PromptDrawer:
    """The prompts of each generation round, with GRESO skipping when ``config.enabled``."""

    def __init__(self, cursor: PromptCursor, examples: Sequence[Example], config: SkipConstantConfig, seed: int):
        self.cursor = cursor
        self.examples = examples
        self.seed = seed
        self.history = PromptHistory(config) if config.enabled else None
        self._skipped = 0  # prompts skipped in the current step
        self._outcomes: list[str] = []  # outcomes of the groups rolled out in the current step

    def take(self, count: int, step: int, round: int) -> list[int]:
        """``count`` example indices to roll out in this round of step ``step`` (0-based, the step being run).

        Skipping stops after a whole epoch's worth of candidates in one round (every prompt predicted constant and
        unlucky): the rest of the round is taken as it comes rather than looping on.
        """
        if self.history is None:
            return self.cursor.take(count)
        rng = random.Random(f"skip-constant:{self.seed}:{step}:{round}")
        kept: list[int] = []
        skipped = 0
        while len(kept) < count:
            (index,) = self.cursor.take(1)
            chance = self.history.skip_probability(self.examples[index])
            if rng.random() < chance and skipped < self.cursor.size:
                skipped += 1
            else:
                kept.append(index)
        self._skipped += skipped
        return kept

    def record(self, groups: Sequence[Group], constant: Sequence[bool], step: int) -> None:
        """Fold a round's rolled-out groups (gathered from every process) and their constancy into the history."""
        if self.history is None:
            return
        for group, flat in zip(groups, constant, strict=True):
            example = group[0].example
            if example is None:
                raise ValueError("a rolled-out group has no example: skipping keys its history by example id")
            outcome = group_outcome(flat, bool(group[0].scored.acc))
            self.history.record(example, outcome, step)
            self._outcomes.append(outcome)

    def end_step(self) -> dict[str, float]:
        """Adapt the exploration probabilities to the step's groups; the step's skipping metrics (none when off)."""
        if self.history is None:
            return {}
        rolled = len(self._outcomes)
        self.history.adapt(self._outcomes)
        row = {
            "sampling/skipped_prompts": float(self._skipped),
            "sampling/skipped_frac": self._skipped / max(1, self._skipped + rolled),
            "sampling/explore_all_right": self.history.explore[ALL_RIGHT],
            "sampling/explore_all_wrong": self.history.explore[ALL_WRONG],
        }
        self._skipped, self._outcomes = 0, []
        return row

    def state_dict(self) -> dict[str, Any]:
        """The trainer-state entries of skipping: its history (nothing when off)."""
        return {STATE_KEY: self.history.state_dict()} if self.history is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the history from a trainer state; one saved with skipping off leaves it empty."""
        if self.history is not None and STATE_KEY in state:
            self.history.load_state_dict(state[STATE_KEY])
