"""TAPO-easy-60K and TAPO-hard-18K, reconstructed from the public datasets the paper names.

The paper does not publish its recipe; this one (documented in docs/data.md) mixes the named sources in fixed
proportions, filters rows whose answers cannot be matched exactly, removes duplicate questions, and adds two
generated kinds the original code scores: ``calculator`` (arithmetic, scored by absolute error) and ``complex``
(a factual question with a numeric answer followed by a computation with a rounding instruction, scored by relative
error). When a source has fewer usable rows than its quota (always so with small local copies), the shortfall is
filled by the generated kinds and recorded in the manifest, so the total size holds and nothing is hidden.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapo.data.arith import REFERENCE_YEAR, apportion, evaluate
from tapo.data.benchmarks import BENCHMARKS
from tapo.data.io import save_examples, sha256_files
from tapo.data.schema import Example
from tapo.data.sources import Source, convert, dapo_math, deepmath, gsm8k, hotpotqa, load_raw, nq_open, question_key
from tapo.io.atomic import write_json

VALIDATION_FRACTION = 0.01

NQ_TRAIN = Source("nq_open", "google-research-datasets/nq_open", "train", nq_open, "nq", "fact-reasoning", "nq_open")
GSM8K_TRAIN = Source("gsm8k", "openai/gsm8k", "train", gsm8k, "gsm8k", "math", "main")
DAPO_TRAIN = Source("dapo_math", "BytedTsinghua-SIA/DAPO-Math-17k", "train", dapo_math, "dapo_math", "math")
DEEPMATH_TRAIN = Source("deepmath", "zwhe99/DeepMath-103K", "train", deepmath(min_difficulty=6.0), "deepmath", "math")


def _hotpot(levels: tuple[str, ...]) -> Source:
    return Source(
        "hotpotqa", "hotpotqa/hotpot_qa", "train", hotpotqa(levels), "hotpotqa", "fact-reasoning", "distractor"
    )


@dataclass(frozen=True)
class Recipe:
    """Rows per part at full size (sources by their key, plus the generated kinds) and extra validation sources."""

    name: str
    size: int
    sources: tuple[tuple[Source, int], ...]
    generated: tuple[tuple[str, int], ...]
    validation_sources: tuple[Source, ...] = ()
    level: str = "easy"


RECIPES = {
    "tapo-easy": Recipe(
        "tapo-easy",
        60_000,
        ((NQ_TRAIN, 25_000), (_hotpot(("easy", "medium")), 12_000), (GSM8K_TRAIN, 7_473)),
        (("complex", 5_527), ("calculator", 10_000)),
    ),
    "tapo-hard": Recipe(
        "tapo-hard",
        18_000,
        ((_hotpot(("hard",)), 4_000), (DAPO_TRAIN, 6_000), (DEEPMATH_TRAIN, 4_000)),
        (("complex", 3_000), ("calculator", 1_000)),
        validation_sources=(BENCHMARKS["aime24"],),
        level="hard",
    ),
}

_EASY_CALCULATIONS = (
    ("Calculate {a} * {b} + {c}.", "{a} * {b} + {c}"),
    ("Calculate {x} / {y}, rounded to 4 decimal places.", "round({x} / {y}, 4)"),
    ("What is {f} multiplied by {g}?", "round({f} * {g}, 4)"),
    ("What is {s} raised to the power of {p}?", "{s} ** {p}"),
)
_HARD_CALCULATIONS = (
    ("Calculate ({a} - {c}) * {b} / {y}, rounded to 4 decimal places.", "round(({a} - {c}) * {b} / {y}, 4)"),
    ("What is {s} to the power of {p}, minus {a} * {b}?", "{s} ** {p} - {a} * {b}"),
    ("Calculate ({f} + {g}) * ({x} - {c}).", "round(({f} + {g}) * ({x} - {c}), 4)"),
)
_YEAR_FOLLOW_UPS = (
    ("{q} How many years before {year} was that? Answer with a whole number.", "{year} - {n}"),
    ("{q} Subtract that year from {year} and give the result.", "{year} - {n}"),
)
_NUMBER_FOLLOW_UPS = (
    ("{q} Multiply the answer by {k}, divide by {d}, and round to 2 decimal places.", "round({n} * {k} / {d}, 2)"),
    ("{q} Take the square root of the answer and round it to 3 decimal places.", "round({n} ** 0.5, 3)"),
)
_INTEGER = re.compile(r"^\d{1,7}$")


def _numbers(rng: random.Random) -> dict[str, Any]:
    return {
        "a": rng.randint(100, 99_999),
        "b": rng.randint(12, 9_999),
        "c": rng.randint(10, 9_999),
        "x": rng.randint(1_000, 999_999),
        "y": rng.randint(7, 997),
        "f": round(rng.uniform(1, 999), 2),
        "g": round(rng.uniform(1, 99), 3),
        "s": rng.randint(2, 99),
        "p": rng.randint(3, 5),
    }


def calculator_items(rng: random.Random, count: int, level: str, seen: set[str]) -> list[Example]:
    """``count`` new arithmetic questions (never one already in ``seen``), data_source ``calculator``."""
    templates = _HARD_CALCULATIONS if level == "hard" else _EASY_CALCULATIONS
    items: list[Example] = []
    while len(items) < count:
        template, expression = rng.choice(templates)
        numbers = _numbers(rng)
        question = template.format(**numbers)
        if question_key(question) in seen:
            continue
        seen.add(question_key(question))
        answer = evaluate(expression.format(**numbers))
        items.append(
            _generated("calculator", len(items), question, answer, {"expression": expression.format(**numbers)})
        )
    return items


def complex_items(rng: random.Random, facts: list[Example], count: int) -> list[Example]:
    """Up to ``count`` search-then-compute questions built on factual rows with an integer answer (one per row)."""
    items: list[Example] = []
    for fact in facts:
        if len(items) == count:
            break
        number = next((gold for gold in fact.golds if _INTEGER.match(gold)), None)
        if number is None:
            continue
        n = int(number)
        is_year = 1000 <= n < REFERENCE_YEAR
        template, expression = rng.choice(_YEAR_FOLLOW_UPS if is_year else _NUMBER_FOLLOW_UPS)
        fields = {"q": fact.question, "year": REFERENCE_YEAR, "n": n, "k": rng.randint(3, 97), "d": rng.randint(2, 9)}
        answer = evaluate(expression.format(**fields))
        meta = {"fact_id": fact.id, "fact_answer": number, "expression": expression.format(**fields)}
        items.append(_generated("complex", len(items), template.format(**fields), answer, meta))
    return items


def _generated(kind: str, number: int, question: str, answer: str, meta: dict[str, Any]) -> Example:
    ability = "fact-calculation" if kind == "complex" else "calculation"
    return Example(
        id=f"{kind}-{number}", question=question, data_source=kind, ability=ability, golds=[answer], meta=meta
    )


@dataclass
class _Collected:
    """Rows kept from the hub sources, factual rows to build ``complex`` items on, and bookkeeping."""

    rows: list[Example]
    facts: list[Example]
    report: dict[str, dict[str, int]]
    shortfall: int


def _collect(
    recipe: Recipe,
    quotas: dict[str, int],
    rng: random.Random,
    source_dir: str | Path | None,
    seen: set[str],
    progress: Callable[[str], None],
) -> _Collected:
    rows: list[Example] = []
    facts: list[Example] = []
    report: dict[str, dict[str, int]] = {}
    shortfall = 0
    for source, _ in recipe.sources:
        progress(f"loading {source.describe()}")
        conversion = convert(source, load_raw(source, source_dir), "train", seen)
        unique = conversion.examples
        rng.shuffle(unique)
        quota = quotas[source.key]
        taken = unique[:quota]
        rows += taken
        if source.ability == "fact-reasoning":  # unused facts first, then used ones (a follow-up makes them new)
            facts += unique[quota:] + taken
        shortfall += quota - len(taken)
        report[source.key] = {
            "read": conversion.read,
            "filtered": conversion.filtered,
            "duplicates": conversion.duplicates,
            "taken": len(taken),
        }
    return _Collected(rows, facts, report, shortfall)


def build_dataset(
    name: str,
    out_dir: str | Path,
    source_dir: str | Path | None = None,
    seed: int = 0,
    size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build recipe ``name`` (``tapo-easy`` or ``tapo-hard``) into ``out_dir``: train.parquet, validation.parquet
    and manifest.json. ``size`` scales every part (default: the paper's size); ``source_dir`` replaces the hub with
    local copies. Returns the manifest."""
    if name not in RECIPES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    size = recipe.size if size is None else size
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    progress = progress or (lambda message: None)
    rng = random.Random(seed)
    held_out = max(1, round(size * VALIDATION_FRACTION))
    parts = {source.key: count for source, count in recipe.sources} | dict(recipe.generated)
    quotas = apportion(size + held_out, parts)
    seen: set[str] = set()
    held_out_sources: list[Example] = []
    for source in recipe.validation_sources:  # first, so that training never holds one of their questions
        progress(f"loading {source.describe()}")
        held_out_sources += convert(source, load_raw(source, source_dir), "validation", seen).examples
    collected = _collect(recipe, quotas, rng, source_dir, seen, progress)
    progress("generating complex and calculator items")
    extra = apportion(collected.shortfall, dict(recipe.generated))  # what the hub sources could not supply
    complex_rows = complex_items(rng, collected.facts, quotas["complex"] + extra["complex"])
    seen.update(question_key(row.question) for row in complex_rows)
    calculator_quota = size + held_out - len(collected.rows) - len(complex_rows)
    rows = collected.rows + complex_rows + calculator_items(rng, calculator_quota, recipe.level, seen)
    rng.shuffle(rows)
    validation = [row.model_copy(update={"split": "validation"}) for row in rows[:held_out]] + held_out_sources
    train = rows[held_out:]
    out = Path(out_dir)
    files = [save_examples(train, out / "train.parquet"), save_examples(validation, out / "validation.parquet")]
    manifest = {
        "name": name,
        "seed": seed,
        "size": size,
        "sources": [source.describe() for source, _ in recipe.sources],
        "validation_sources": [source.describe() for source in recipe.validation_sources],
        "quotas": quotas,
        "sources_report": collected.report,
        "shortfall_filled_by_generated": collected.shortfall,
        "counts": {
            "train": dict(sorted(Counter(row.data_source for row in train).items())),
            "validation": dict(sorted(Counter(row.data_source for row in validation).items())),
        },
        "sha256": sha256_files(files),
    }
    write_json(out / "manifest.json", manifest)
    return manifest
