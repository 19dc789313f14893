"""Invented names built from syllables, unique across a whole world.

The names must be unknowable (no model has seen them, so a question about them needs a search) and unambiguous for a
bag-of-words retriever: every name word appears in exactly one entity's name, so searching an entity's name finds
its own passage first. Uniqueness is checked on a crude stem (trailing ``s``/``e``/``y`` removed) because the search
index stems words, and two names differing only by such an ending would collide there.
"""

from __future__ import annotations

import random

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "k", "kr", "l", "m", "n", "p", "pr", "qu", "r", "st", "t", "th", "tr")
_ONSETS += ("v", "z", "zh", "sk", "x", "vl", "gl")
_VOWELS = ("a", "o", "u", "i", "ae", "ia", "ou", "y")
_CODAS = ("", "", "", "", "", "n", "r", "l", "x", "th", "nd", "rk", "v", "z", "m", "sk", "lt")
_MIN_LENGTH = 5


def _stem_key(word: str) -> str:
    return word.lower().rstrip("sey")


class NameForge:
    """Hands out fresh words; never the same word (or the same stem) twice."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def word(self, syllables: tuple[int, int] = (2, 3)) -> str:
        """A new capitalised word of ``syllables[0]..syllables[1]`` syllables."""
        while True:
            count = self._rng.randint(*syllables)
            word = "".join(
                self._rng.choice(_ONSETS) + self._rng.choice(_VOWELS) + self._rng.choice(_CODAS) for _ in range(count)
            )
            key = _stem_key(word)
            if len(word) >= _MIN_LENGTH and key not in self._used:
                self._used.add(key)
                return word.capitalize()
