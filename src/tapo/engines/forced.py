"""A forced prefix for demonstrations: the first turns of a conversation are given, the model writes the rest.

A small untrained model rarely calls a tool on its own; forcing the first action(s) shows the whole
protocol (real tool calls, real outputs inserted) while the model still writes every later turn.
"""

from __future__ import annotations

from typing import Any

from tapo.engines.base import Generation, GenerationEngine, SamplingParams
from tapo.engines.scripted import ScriptedEngine


class ForcedPrefixEngine:
    """Wraps ``engine``: the first ``len(forced)`` turns requested emit ``forced`` (tokenized, stop strings and
    caps applied as for sampled text), every later turn is the engine's. Meant for one conversation: make a
    new one per question."""

    def __init__(self, engine: GenerationEngine, forced: list[str]) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.scripted = ScriptedEngine(engine.tokenizer, forced)
        self.forced = len(forced)

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        if self.scripted.calls < self.forced:
            return await self.scripted.agenerate(prompt, params)
        return await self.engine.agenerate(prompt, params)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        n = max(0, self.forced - self.scripted.calls)
        rest = self.engine.generate(prompts[n:], params) if prompts[n:] else []
        return self.scripted.generate(prompts[:n], params) + rest

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        self.engine.update_weights(state_dict)

    def release(self, ids: list[int]) -> None:
        """Pass the end of a trajectory on to an engine that caches its context."""
        release = getattr(self.engine, "release", None)
        if release is not None:
            release(ids)
