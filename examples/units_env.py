"""A complete tapo environment in one file: unit conversion with a `convert_units` tool.

    PYTHONPATH=examples tapo train --env units_env:units model.name=smollm2-135m-instruct
    PYTHONPATH=examples tapo eval --env units_env:units --model runs/tapo-run

Nothing inside tapo names this task: the questions come from `questions` (code, deterministic), the tool is a typed
function with a docstring, the reward a function of the answer and the gold, the prompt TAPO's `compact` family
(its variant offering exactly this tool). docs/environments.md walks through it.
"""

from __future__ import annotations

import random
import re
from typing import Literal

from tapo.envs import Environment

Unit = Literal["km", "mi", "m", "ft", "kg", "lb", "l", "gal"]

# Everything in a base unit of its dimension (metres, kilograms, litres).
FACTORS: dict[str, tuple[str, float]] = {
    "km": ("length", 1000.0),
    "mi": ("length", 1609.344),
    "m": ("length", 1.0),
    "ft": ("length", 0.3048),
    "kg": ("mass", 1.0),
    "lb": ("mass", 0.45359237),
    "l": ("volume", 1.0),
    "gal": ("volume", 3.785411784),
}
NAMES = {
    "km": "kilometres",
    "mi": "miles",
    "m": "metres",
    "ft": "feet",
    "kg": "kilograms",
    "lb": "pounds",
    "l": "litres",
    "gal": "US gallons",
}
SIZES = {"train": 300, "validation": 40, "test": 60}
TOLERANCE = 0.01
"""A right answer is within 1 % of the gold: the question asks for two decimals, not for the tool's digits."""


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit`` (the same dimension)."""
    (dimension, factor), (other, to_factor) = FACTORS[from_unit], FACTORS[to_unit]
    if dimension != other:
        raise ValueError(f"cannot convert {dimension} ({from_unit}) to {other} ({to_unit})")
    return value * factor / to_factor


def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> str:
    """Convert a quantity between units of length (km, mi, m, ft), mass (kg, lb) or volume (l, gal)."""
    try:
        return f"{value} {from_unit} = {convert(value, from_unit, to_unit):.4f} {to_unit}"
    except ValueError as error:  # the model reads what was wrong
        return str(error)


def questions(split: str) -> list[dict]:
    """The questions of ``split``: a fixed seed per split, so every run and machine gets the same rows."""
    rng = random.Random(f"units-{split}")
    pairs = [(a, b) for a in FACTORS for b in FACTORS if a != b and FACTORS[a][0] == FACTORS[b][0]]
    rows = []
    for number in range(SIZES[split]):
        source, target = rng.choice(pairs)
        value = round(rng.uniform(1, 500), 1)
        rows.append(
            {
                "id": f"units-{split}-{number}",
                "question": f"How many {NAMES[target]} are {value} {NAMES[source]}? Round to 2 decimal places.",
                "data_source": "units",
                "ability": "calculation",
                "golds": [f"{convert(value, source, target):.2f}"],
            }
        )
    return rows


_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def within_one_percent(prediction: str, gold: str) -> float:
    """1 when the first number of the answer is within 1 % of the gold, else 0."""
    match = _NUMBER.search(prediction)
    if match is None:
        return 0.0
    predicted, expected = float(match.group().replace(",", "")), float(gold)
    return float(abs(predicted - expected) <= TOLERANCE * abs(expected))


units = Environment(
    name="units",
    dataset=questions,
    template="compact",
    tools=(convert_units,),
    rewards={"units": within_one_percent},
)
