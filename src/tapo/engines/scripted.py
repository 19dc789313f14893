"""An engine that "samples" predetermined text, one script entry per model turn.

It behaves like a model at the token level: the text is tokenized on its own, emitted token by token,
and cut at the first stop string, EOS or ``max_new_tokens`` exactly as a sampled continuation would be;
a script entry that ends without any of them ends with EOS, as a chat model ends its turn. It drives the
property tests of the rollout, and the pipeline uses it to turn oracle plans into protocol demonstrations
for the supervised warm start (the real rollout loop, with real tools, inserts the tool outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tapo.engines.base import Generation, SamplingParams
from tapo.engines.stops import StopScanner, eos_token_ids

# (context ids, turn index) -> the text the "model" writes in that turn
Script = Callable[[list[int], int], str]


class ScriptedEngine:
    """``GenerationEngine`` whose turn k of any conversation emits ``turns[k]`` (or ``turns(context, k)``).

    The turn index of a request is found from its context: a prompt that extends the context this engine
    produced at turn k (earlier prompt + emitted ids, with anything appended after) is at turn k + 1, so
    many conversations can run concurrently and a conversation's history is all the state there is.
    Scripted tokens have probability 1: their log-probs are 0.
    """

    def __init__(self, tokenizer: Any, turns: Sequence[str] | Script) -> None:
        self.tokenizer = tokenizer
        self._script: Script = turns if callable(turns) else _from_list(list(turns))
        self.eos_ids = eos_token_ids(None, tokenizer)
        self._eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(self.eos_ids)
        self._turn_after: dict[tuple[int, ...], int] = {}
        self.calls = 0

    def _turn_of(self, prompt: list[int]) -> int:
        known = [(len(ctx), turn) for ctx, turn in self._turn_after.items() if tuple(prompt[: len(ctx)]) == ctx]
        return max(known)[1] if known else 0

    def _one(self, prompt: list[int], params: SamplingParams) -> Generation:
        self.calls += 1
        turn = self._turn_of(prompt)
        text = self._script(prompt, turn)
        ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self._eos]
        scanner = StopScanner(self.tokenizer, params.stop, self.eos_ids, params.max_new_tokens, prompt)
        emitted: list[int] = []
        cut = None
        for token_id in ids:
            emitted.append(token_id)
            cut = scanner.push(token_id)
            if cut is not None:
                break
        assert cut is not None  # the script ends with EOS, which always cuts
        self._turn_after[(*prompt, *emitted)] = turn + 1
        return Generation(
            token_ids=emitted, finish_reason=cut.finish_reason, logprobs=[0.0] * len(emitted), stop=cut.stop
        )

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """Each prompt's next script entry, for sync callers (the benchmark of turn-synchronous rollouts)."""
        return [self._one(prompt, params) for prompt in prompts]

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        return self._one(prompt, params)

    def release(self, ids: Sequence[int]) -> None:
        """Nothing cached to free: a conversation's turn index is found from its history."""

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        """A script has no weights."""

    def close(self) -> None:
        """A script starts nothing."""


def _from_list(turns: list[str]) -> Script:
    def script(context: list[int], turn: int) -> str:
        return turns[turn] if turn < len(turns) else ""

    return script
