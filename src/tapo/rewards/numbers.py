"""Read one number out of an answer: ``1,234``, ``-3.5 km``, ``25%``, ``$18``, ``1.5e3``, ``\\frac{1}{2}``.

TAPO's ``complex`` rule (docs/method.md §3) ("keep digits, sign and point") glues every number of an answer into one
(``between 3 and 4`` → 34, ``1.5e3`` → 1.53). Here an answer counts as a number only when it holds exactly
one, so a hedged answer that lists candidates is not a number and cannot collect the credit. For the same
reason a number next to an operator or glued to more digits is not that number: ``2^10`` is not 2, ``5!``
is not 5, ``\\sqrt{2}`` is not 2, ``0x10`` is not 0, ``1.2.3`` is not 1.2. Thousands grouped by spaces
(``99 753``, as SI and French write them) are one number, like ``99,753``.
"""

from __future__ import annotations

import math
import re

from tapo.rewards.normalize import normalize

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?"
_NUMBER_RE = re.compile(rf"(?<![\w.^]){_NUMBER}")  # not inside a word, a decimal or an exponent
_ONLY_NUMBER_RE = re.compile(rf"^[$€£]?\s*{_NUMBER}\s*%?$")
_LATEX_FRACTION_RE = re.compile(rf"\\[dt]?frac\{{\s*({_NUMBER})\s*\}}\{{\s*({_NUMBER})\s*\}}")
_FRACTION_RE = re.compile(rf"^({_NUMBER})\s*/\s*({_NUMBER})$")
_TIMES_TEN_RE = re.compile(rf"({_NUMBER})\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*\{{?\s*([-+]?\d+)\s*\}}?")
# LaTeX and typography that never change a number's value: math delimiters, \boxed{}, \text{}, spacing, \% and \$.
_LATEX_NOISE_RE = re.compile(r"\\boxed|\\text\w*|\\mathrm|\\left|\\right|\\[,;:! ]|\\%|\\\$|[${}]")
_MINUS_SIGNS = str.maketrans({"−": "-", "–": "-", "﹣": "-", "－": "-"})
# Groups of three digits after a lead of one to three (not 0), split by a (no-break, thin, narrow no-break) space.
_SPACE_GROUPED_RE = re.compile(r"(?<![\d.])[1-9]\d{0,2}(?:[ \u00a0\u2009\u202f]\d{3})+(?!\d)")
_GROUP_SPACE_RE = re.compile(r"[ \u00a0\u2009\u202f]")
# Next to a number these make it part of an expression: arithmetic, powers (also superscript), factorial, roots.
_OPERATORS = frozenset("+-*/^×÷·!√∛∜_⁰¹²³⁴⁵⁶⁷⁸⁹")
_LATEX_COMMAND_END_RE = re.compile(r"\\[a-z]+$")
_GLUED_DIGITS_RE = re.compile(r"[\w.]*\d")  # ``x10`` of ``0x10``, ``_000`` of ``1_000``, ``.3`` of ``1.2.3``


def parse_number(text: str, strict: bool = False) -> float | None:
    """The one finite number ``text`` states (units, currency and ``%`` ignored), or None when it states 0 or 2+.

    ``strict``: the text must be nothing but the number (currency sign and ``%`` allowed), so ``x + 2`` is not 2.
    """
    cleaned = normalize(text).translate(_MINUS_SIGNS)
    cleaned = _LATEX_FRACTION_RE.sub(r"\1/\2", cleaned)
    cleaned = _TIMES_TEN_RE.sub(r"\1e\2", _LATEX_NOISE_RE.sub(" ", cleaned)).strip()
    cleaned = _SPACE_GROUPED_RE.sub(lambda grouped: _GROUP_SPACE_RE.sub("", grouped.group()), cleaned)
    if fraction := _FRACTION_RE.match(cleaned):
        numerator, denominator = float(fraction.group(1)), float(fraction.group(2))
        value = numerator / denominator if denominator else math.nan
    else:
        found = list(_NUMBER_RE.finditer(cleaned))
        lone = len(found) == 1 and _stands_alone(cleaned, found[0]) and (not strict or _ONLY_NUMBER_RE.match(cleaned))
        value = float(found[0].group()) if lone else math.nan
    return value if math.isfinite(value) else None


def _stands_alone(text: str, number: re.Match[str]) -> bool:
    """Whether ``number`` is a value of its own in ``text``, not an operand or a piece of a longer numeral.

    It is not when an operator or a LaTeX command (``\\sqrt``, ``\\pi``) is next to it (spaces between
    allowed), or when more digits are glued to its end (``0x10``, ``1_000``, ``1.2.3``). Letters glued to
    it are a unit (``3km``) and words around it are prose.
    """
    before, after = text[: number.start()].rstrip(), text[number.end() :]
    if _GLUED_DIGITS_RE.match(after):
        return False
    after = after.lstrip()
    if before and (before[-1] in _OPERATORS or _LATEX_COMMAND_END_RE.search(before)):
        return False
    return not after or not (after[0] in _OPERATORS or after.startswith("\\"))
