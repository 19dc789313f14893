"""The generation-engine contract: token ids in, sampled token ids (and their log-probs) out.

Keeping ids (never decoded-and-retokenized text) is what makes the loss mask exact: the trainer
scores precisely the tokens the engine sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

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
    """One sampled continuation. ``stop`` is the stop string that ended it (its text is in ``token_ids``).
    ``versions``: per token, the policy version of the weights that sampled it, from an engine that loads new weights
    while it generates (the transformers engine, :meth:`tapo.engines.hf.HFEngine.update_weights`); None from the
    others, whose weights cannot change during a call."""

    token_ids: list[int]
    finish_reason: FinishReason
    logprobs: list[float] | None = None
    stop: str | None = None
    versions: list[int] | None = None


class GenerationEngine(Protocol):
    """Every call the rest of tapo makes on a backend (transformers, vLLM, a vLLM server, an OpenAI-compatible
    server, a script), and nothing more: the agent loop (``tokenizer``, ``agenerate``, ``release``), the training
    source (``update_weights``, ``close``), ``tapo chat`` and the benchmarks (``close``).

    Engines also have a batch ``generate(prompts, params)`` for sync callers (tests, benchmarks, the transformers
    engine's own batcher); nothing in the run path calls it, so it is not part of the contract.
    """

    tokenizer: Any

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        """Continue one prompt; engines with continuous batching serve many concurrent calls."""
        ...

    def release(self, ids: Sequence[int]) -> None:
        """The trajectory whose whole context is ``ids`` has ended: an engine that caches contexts between calls
        (the transformers engine's KV reuse) frees it now; the others have nothing to free."""
        ...

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        """Load new policy weights in place (after an optimizer step)."""
        ...

    def close(self) -> None:
        """Stop what the engine started (processes, an event loop, connections); closing twice is a no-op."""
        ...
