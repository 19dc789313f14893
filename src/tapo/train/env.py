"""The production :class:`~tapo.train.trainer.RolloutSource`: engine + tools + multi-turn rollout + reward.

Prompts are rendered once per example and cached (the chat template is not free on CPU). Sampling uses
the process's global RNG, which accelerate's checkpoints save and restore, so a resumed run draws the
same samples the killed run would have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from tapo.config.schema import TapoConfig
from tapo.data.schema import Example
from tapo.engines.base import SamplingParams
from tapo.rollout.trajectory import Trajectory

ScoreFn = Callable[[list[Trajectory]], None]


class ToolRollout:
    """Groups of ``trainer.group_size`` trajectories per example, scored by ``score`` (default: the config's
    :class:`~tapo.rewards.compute.RewardFunction`)."""

    def __init__(self, config: TapoConfig, model: Any, tokenizer: Any, score: ScoreFn | None = None) -> None:
        from tapo.engines.factory import build_engine
        from tapo.prompts.templates import allowed_tools
        from tapo.rollout.loop import RolloutRunner
        from tapo.tools.registry import build_tools

        self.config = config
        self.tokenizer = tokenizer
        self.engine = build_engine(config.rollout, model, tokenizer)
        self.allowed = allowed_tools(config.data.template) & frozenset(config.tools.enabled)
        self.tools = build_tools(config.tools, sorted(self.allowed))
        self.runner = RolloutRunner(self.engine, self.tools, config.rollout)
        self._reward = None
        if score is None:
            from tapo.rewards.compute import RewardFunction

            self._reward = RewardFunction(config.reward, config.rollout.max_response_tokens)
            score = self._reward.score_trajectories
        self.score = score
        self._prompts: dict[str, list[int]] = {}
        self.params = SamplingParams(
            max_new_tokens=config.rollout.max_new_tokens_per_turn,
            temperature=config.rollout.temperature,
            top_p=config.rollout.top_p,
        )

    def check_sources(self, examples: Sequence[Example]) -> None:
        """Fail before training when a data source has no scorer."""
        if self._reward is not None:
            self._reward.check_sources({ex.data_source for ex in examples})

    def _prompt(self, example: Example) -> list[int]:
        if example.id not in self._prompts:
            from tapo.prompts.templates import render_prompt

            ids = render_prompt(self.tokenizer, example.question, self.config.data.template)
            self._prompts[example.id] = ids[-self.config.data.max_prompt_tokens :]
        return self._prompts[example.id]

    def sample(self, examples: Sequence[Example], step: int) -> list[list[Trajectory]]:
        n = self.config.trainer.group_size
        prompts = [self._prompt(ex) for ex in examples for _ in range(n)]
        rows = [ex.model_dump() for ex in examples for _ in range(n)]
        trajs = self.runner.run(prompts, rows, self.params, self.allowed)
        self.score(trajs)
        return [trajs[i : i + n] for i in range(0, len(trajs), n)]

    def sync(self, model: torch.nn.Module) -> None:
        unwrapped = getattr(model, "module", model)
        self.engine.update_weights(unwrapped.state_dict())

    def close(self) -> None:
        closer = getattr(self.tools, "close", None)
        if callable(closer):
            closer()
        if self._reward is not None:
            self._reward.close()
