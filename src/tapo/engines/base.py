"""The generation-engine contract: token ids in, sampled token ids (and their log-probs) out.

Keeping ids (never decoded-and-retokenized text) is what makes the loss mask exact: the trainer
scores precisely the tokens the engine sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "eos", "length"]


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Generation:
    """One sampled continuation. ``stop`` is the stop string that ended it (its text is in ``token_ids``)."""

    token_ids: list[int]
    finish_reason: FinishReason
    logprobs: list[float] | None = None
    stop: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class GenerationEngine(Protocol):
    """What the rollout needs from a backend (transformers, vLLM, an OpenAI-compatible server)."""

    tokenizer: Any

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """Continue each prompt once; batch members are independent."""
        ...

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        """Continue one prompt; engines with continuous batching serve many concurrent calls."""
        ...

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        """Load new policy weights in place (after an optimizer step)."""
        ...


# Optional: an engine that caches contexts between calls (the transformers engine's KV reuse) may also define
# ``release(ids: list[int]) -> None``; the rollout calls it with a trajectory's whole context when it ends.
