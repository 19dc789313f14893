"""Scorers by ``data_source``: the built-in table, user scorers from the config, and fail-fast lookup.

Source names are matched after canonicalization (lower-case, ``-``, ``_``, spaces and dots removed), so
``MATH-500``, ``math_500`` and ``math500`` are one source; ``family/subset`` falls back to ``family``
(``tapo_mini/multi_hop`` → ``tapo_mini``), a name followed by a number falls back to the name (``popqa_2`` →
``popqa``), and every name that starts with ``aime`` is ``aime`` (``aime_2024_I``, ``aime25``), as TAPO's router takes
any ``data_source.startswith("aime")``: every name that router takes has a scorer here. An empty source, or
``default`` (TAPO's name for it), uses ``reward.default_scorer``; an unknown one is an error that lists the known
sources: a typo must not silently change the reward.

Two tables, chosen by ``reward.preset``: ``tapo-eval`` (the default) scores for reporting (Search-R1's EM for QA,
symbolic equivalence for math); ``tapo`` gives every source TAPO's original code knows the rule that code gave it
(docs/method.md §3), to train a faithful reproduction, and keeps the reporting scorer for the sources it did not know.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Iterable

from tapo.config.schema import RewardConfig
from tapo.rewards import scorers
from tapo.rewards.scorers import MathScorer, Scorer

# Search-R1's QA suite is scored by its exact match so results compare with the published figures; TAPO's
# lenient ``nq`` rule (substring, edit-distance credit) is one override away: custom_scorers={nq: nq}.
SOURCE_SCORERS: dict[str, str] = {
    **dict.fromkeys(("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle"), "em"),
    **dict.fromkeys(("gsm8k", "math", "math500", "aime", "aime24", "aime2024", "dapomath", "dapomath17k"), "math"),
    "deepmath": "math",
    "deepmath103k": "math",
    "calculator": "calculator",
    "complex": "complex",
    "tapomini": "auto",
}

# TAPO's ``_check_score``: exact match for default/gsm8k/dapo_math/deep_math/aime*, its lenient ``nq`` rule, and the
# two numeric rules (``complex`` as TAPO's code reads numbers: ``tapo_complex``); canonical names, so ``deep_math``,
# ``DAPO-Math-17k`` and ``aime_2024`` are covered too.
TAPO_SCORERS: dict[str, str] = {
    **dict.fromkeys(("gsm8k", "dapomath", "dapomath17k", "deepmath", "deepmath103k"), "exact"),
    **dict.fromkeys(("aime", "aime24", "aime2024"), "exact"),
    "nq": "nq",
    "calculator": "calculator",
    "complex": "tapo_complex",
}

PRESETS: dict[str, dict[str, str]] = {"tapo-eval": SOURCE_SCORERS, "tapo": SOURCE_SCORERS | TAPO_SCORERS}
"""``reward.preset`` -> canonical source -> scorer name."""

DEFAULT_SOURCE = "default"
"""TAPO's data_source for rows without a dataset of their own: scored like an empty source."""

_NUMBERED = re.compile(r"^(?P<family>[a-z]+)\d+$")
_PREFIX_FAMILIES = ("aime",)
"""Families TAPO's router matches by prefix (``data_source.startswith("aime")``): any canonical name that starts so."""


class RewardError(ValueError):
    """A scorer that cannot be found, loaded or trusted: raised before any score is given."""


def canonical_source(data_source: str) -> str:
    return re.sub(r"[\s._-]+", "", data_source.lower())


def _checked(name: str, function: Scorer) -> Scorer:
    """Wrap a user scorer so a value outside [0, 1] is an error naming it, not a silently skewed reward."""

    def scorer(prediction: str, gold: str) -> float:
        value = function(prediction, gold)
        if not isinstance(value, int | float) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise RewardError(f"scorer {name} returned {value!r}; a score must be a number in [0, 1]")
        return float(value)

    return scorer


def load_scorer(spec: str) -> Scorer:
    """Import ``"module:function"`` (a callable ``(prediction, gold) -> float``)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise RewardError(f"custom scorer {spec!r} must be a built-in name or 'module:function'")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:  # importing user code can raise anything (SyntaxError, NameError, ...)
        raise RewardError(f"cannot load custom scorer {spec!r}: {type(error).__name__}: {error}") from None
    if not callable(function):
        raise RewardError(f"custom scorer {spec!r} is not callable")
    return _checked(spec, function)


class ScorerRegistry:
    """Named scorers and the source → scorer table, built from a :class:`RewardConfig`."""

    def __init__(self, config: RewardConfig) -> None:
        self._math = MathScorer(config.math_timeout_s, config.math_memory_mb)
        self.scorers: dict[str, Scorer] = {**scorers.PURE_SCORERS, "math": self._math}
        self.default = config.default_scorer
        self.sources: dict[str, str] = dict(PRESETS[config.preset])
        for source, spec in config.custom_scorers.items():
            if spec not in self.scorers:
                self.scorers[spec] = load_scorer(spec)
            self.register(source, spec)

    def names(self) -> str:
        return ", ".join(sorted(self.scorers))

    def register(self, data_source: str, scorer_name: str, scorer: Scorer | None = None) -> None:
        """Score ``data_source`` with ``scorer_name`` (a known scorer, or a new one given as ``scorer``)."""
        if scorer is not None:
            self.scorers[scorer_name] = _checked(scorer_name, scorer)
        if scorer_name not in self.scorers:
            raise RewardError(f"unknown scorer {scorer_name!r}; scorers: {self.names()}")
        self.sources[canonical_source(data_source)] = scorer_name

    def resolve(self, data_source: str) -> tuple[str, Scorer]:
        """The scorer name and function for ``data_source``; RewardError listing known sources if none."""
        if not data_source.strip() or canonical_source(data_source) == DEFAULT_SOURCE:
            return self.default, self.scorers[self.default]
        for candidate in (data_source, data_source.split("/", 1)[0]):
            canonical = canonical_source(candidate)
            numbered = _NUMBERED.match(canonical)
            prefixed = next((family for family in _PREFIX_FAMILIES if canonical.startswith(family)), None)
            for key in (canonical, numbered["family"] if numbered else None, prefixed):
                name = self.sources.get(key) if key else None
                if name is not None:
                    return name, self.scorers[name]
        raise RewardError(
            f"no scorer for data_source {data_source!r}; known sources: {', '.join(sorted(self.sources))} "
            f"(add one with reward.custom_scorers={{{data_source}: em}} or a 'module:function')"
        )

    def name_for(self, data_source: str) -> str | None:
        """The scorer name ``data_source`` gets, or None when no scorer knows it (a filter, not an error)."""
        try:
            return self.resolve(data_source)[0]
        except RewardError:
            return None

    def check_sources(self, data_sources: Iterable[str]) -> None:
        """Resolve every source up front, so a run fails before any GPU time is spent."""
        for source in set(data_sources):
            self.resolve(source)

    def close(self) -> None:
        self._math.close()
