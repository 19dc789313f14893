"""Where a sampled continuation ends: the first EOS token or the token that completes a stop string.

Shared by every engine that samples token by token, so "stop at the first closing tag" means the same
thing for the transformers backend and the scripted engine. Tokens are decoded one at a time: stop
strings are ASCII tags, and a byte-level tokenizer keeps ASCII text intact per token, so the token whose
text completes a stop string is found without decoding the sequence again for every prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tapo.engines.base import FinishReason


@dataclass(frozen=True)
class Cut:
    """The kept length of a continuation, why it ended and the stop string that ended it."""

    length: int
    finish_reason: FinishReason
    stop: str | None = None


class StopScanner:
    """Incremental scan: feed tokens one by one; ``push`` returns a Cut once the continuation is complete."""

    def __init__(
        self,
        tokenizer: Any,
        stops: Sequence[str],
        eos_ids: Iterable[int],
        max_new_tokens: int,
        prompt: Sequence[int] = (),
    ) -> None:
        self._tokenizer = tokenizer
        self._stops = tuple(s for s in stops if s)
        self._eos = frozenset(eos_ids)
        self._max = max_new_tokens
        # Like transformers' StopStringCriteria, a stop string may begin in the prompt's last characters.
        keep = max((len(s) for s in self._stops), default=1) - 1
        tail = tokenizer.decode(list(prompt[-keep:]), skip_special_tokens=False) if keep and prompt else ""
        self._text = tail[-keep:] if keep else ""
        self._n = 0

    def push(self, token_id: int) -> Cut | None:
        self._n += 1
        if token_id in self._eos:
            return Cut(self._n, "eos")
        if self._stops:
            # Only a match that ends inside the newest token counts: earlier text was already scanned.
            old = len(self._text)
            self._text += self._tokenizer.decode([token_id], skip_special_tokens=False)
            found = ((self._text.find(s, max(0, old - len(s) + 1)), s) for s in self._stops)
            hits = [(at, s) for at, s in found if at >= 0]
            if hits:
                return Cut(self._n, "stop", min(hits)[1])
        if self._n >= self._max:
            return Cut(self._n, "length")
        return None


def eos_token_ids(model_or_tokenizer_eos: int | list[int] | None, tokenizer: Any) -> frozenset[int]:
    """EOS ids from the generation config (an int or a list) plus the tokenizer's own."""
    ids: set[int] = set()
    if isinstance(model_or_tokenizer_eos, int):
        ids.add(model_or_tokenizer_eos)
    elif model_or_tokenizer_eos:
        ids.update(model_or_tokenizer_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)
