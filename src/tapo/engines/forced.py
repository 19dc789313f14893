"""A forced prefix for demonstrations: the first turns of a conversation are given, the model writes the rest.

A small untrained model rarely calls a tool on its own; forcing the first action(s) shows the whole
protocol (real tool calls, real outputs inserted) while the model still writes every later turn.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def release(self, ids: Sequence[int]) -> None:
        """Pass the end of a trajectory on to the wrapped engine (it may cache the context)."""
        self.engine.release(ids)

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        self.engine.update_weights(state_dict)

    def close(self) -> None:
        """Leaves the wrapped engine open: it is its caller's, who wraps it anew for each conversation."""
