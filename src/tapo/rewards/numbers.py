"""Read one number out of an answer: ``1,234``, ``-3.5 km``, ``25%``, ``$18``, ``1.5e3``, ``\\frac{1}{2}``.

The spec's ``complex`` rule ("keep digits, sign and point") glues every number of an answer into one
(``between 3 and 4`` → 34, ``1.5e3`` → 1.53). Here an answer counts as a number only when it holds exactly
one, so a hedged answer that lists candidates is not a number and cannot collect the credit.
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


def parse_number(text: str, strict: bool = False) -> float | None:
    """The one finite number ``text`` states (units, currency and ``%`` ignored), or None when it states 0 or 2+.

    ``strict``: the text must be nothing but the number (currency sign and ``%`` allowed), so ``x + 2`` is not 2.
    """
    cleaned = normalize(text).translate(_MINUS_SIGNS)
    cleaned = _LATEX_FRACTION_RE.sub(r"\1/\2", cleaned)
    cleaned = _TIMES_TEN_RE.sub(r"\1e\2", _LATEX_NOISE_RE.sub(" ", cleaned)).strip()
    if fraction := _FRACTION_RE.match(cleaned):
        numerator, denominator = float(fraction.group(1)), float(fraction.group(2))
        value = numerator / denominator if denominator else math.nan
    else:
        found = _NUMBER_RE.findall(cleaned)
        lone = len(found) == 1 and (not strict or _ONLY_NUMBER_RE.match(cleaned))
        value = float(found[0]) if lone else math.nan
    return value if math.isfinite(value) else None
