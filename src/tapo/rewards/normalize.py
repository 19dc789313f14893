"""Answer normalization: TAPO's rule for its own scorers and Search-R1's rule for EM / F1 (and TAPO's rule exactly as
its code has it, for the one scorer that must agree with it on every answer: ``tapo_complex``).

Two rules because two families of numbers are compared: TAPO's scorers (docs/method.md §3) keep punctuation and
articles but unify number spellings, while Search-R1's ``normalize_answer`` (the SQuAD rule) drops
punctuation and articles so that its exact match is comparable with the published figures.
"""

from __future__ import annotations

import re
import string

_NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b")
_DIGIT_COMMA_RE = re.compile(r"(?<=\d),(?=\d)")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _number_word(match: re.Match[str]) -> str:
    return str(_NUMBER_WORDS.index(match.group(1)) + 1)


def _lower(text: str) -> str:
    """Lower-case until stable: a few Unicode letters lower-case in two steps, and both rules must be idempotent."""
    lowered = text.lower()
    while (again := lowered.lower()) != lowered:
        lowered = again
    return lowered


def normalize(text: str) -> str:
    """docs/method.md §3: strip, lower-case, number words one..twelve → digits, commas removed inside digit strings."""
    return _DIGIT_COMMA_RE.sub("", _NUMBER_WORD_RE.sub(_number_word, _lower(text))).strip()


def original_normalize(text: str) -> str:
    """TAPO's ``normalize_answer`` as its code has it, narrower than :func:`normalize`: strip and lower-case, a number
    word only when it is the whole answer, commas dropped only when the rest is all digits (``1,000.5`` keeps its
    comma)."""
    text = text.strip().lower()
    text = str(_NUMBER_WORDS.index(text) + 1) if text in _NUMBER_WORDS else text
    if text.replace(",", "").isdigit():
        text = text.replace(",", "")
    return text.strip()


def normalize_answer(text: str) -> str:
    """Search-R1's ``normalize_answer``: lower-case, drop ASCII punctuation, drop articles, squeeze whitespace."""
    return " ".join(_ARTICLES_RE.sub(" ", _lower(text).translate(_PUNCTUATION)).split())
