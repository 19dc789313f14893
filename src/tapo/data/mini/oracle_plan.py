"""A TAPO-mini question's oracle plan as a type: what an oracle calls, in order, to answer it.

The plan is stored in ``Example.meta["plan"]`` as a list of plain objects (``{"tool": "search", "query": ...}``),
so a dataset file stays readable JSON. Every reader (the warm-start demonstrations, the plans-followed metric, the
tests) goes through :meth:`OraclePlan.of`, the one place that knows those keys: a step with a misspelt key is one
clear error here, not a ``KeyError`` deep inside whichever reader met it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from tapo.data.schema import Example

PLAN_KEY = "plan"


class PlanError(ValueError):
    """A ``meta.plan`` that is not a list of search and code steps with their fields."""


@dataclass(frozen=True)
class SearchStep:
    """Search the entity's name to read one attribute: ``fact`` says it in words, ``value`` is what it finds."""

    tool: ClassVar[str] = "search"
    query: str
    attribute: str
    fact: str
    value: str


@dataclass(frozen=True)
class CodeStep:
    """Run ``code`` (plain Python that prints the answer, found values written into it); ``output`` is its print."""

    tool: ClassVar[str] = "code"
    code: str
    output: str


PlanStep = SearchStep | CodeStep
_STEPS: dict[str, type[SearchStep] | type[CodeStep]] = {SearchStep.tool: SearchStep, CodeStep.tool: CodeStep}


@dataclass(frozen=True)
class OraclePlan:
    """The steps of one question's plan; empty for a question answered without tools."""

    steps: tuple[PlanStep, ...] = ()

    @property
    def tools(self) -> tuple[str, ...]:
        """The tools called, in order: what a model following the plan calls."""
        return tuple(step.tool for step in self.steps)

    @property
    def searches(self) -> tuple[SearchStep, ...]:
        return tuple(step for step in self.steps if isinstance(step, SearchStep))

    def to_meta(self) -> list[dict[str, str]]:
        """The plan as ``meta["plan"]`` stores it: one object per step, ``tool`` first."""
        return [{"tool": step.tool, **asdict(step)} for step in self.steps]

    @classmethod
    def from_meta(cls, rows: object) -> OraclePlan:
        """Parse a stored plan; anything but a list of complete search and code steps is a :class:`PlanError`."""
        if not isinstance(rows, list):
            raise PlanError(f"is a {type(rows).__name__}, not a list of steps")
        return cls(tuple(_step(i, row) for i, row in enumerate(rows, start=1)))

    @classmethod
    def of(cls, example: Example) -> OraclePlan | None:
        """The plan of a question; None when it has none (a question from a dataset other than TAPO-mini)."""
        if PLAN_KEY not in example.meta:
            return None
        try:
            return cls.from_meta(example.meta[PLAN_KEY])
        except PlanError as error:
            raise PlanError(f"question {example.id!r} ({example.data_source}): meta.plan {error}") from None


def _step(index: int, row: object) -> PlanStep:
    if not isinstance(row, Mapping):
        raise PlanError(f"step {index} is a {type(row).__name__}, not an object")
    kind = _STEPS.get(str(row.get("tool")))
    if kind is None:
        raise PlanError(f"step {index}: tool {row.get('tool')!r} is not one of {', '.join(_STEPS)}")
    names = [f.name for f in fields(kind)]
    unknown = sorted(str(key) for key in row if key != "tool" and key not in names)
    bad = [name for name in names if not isinstance(row.get(name), str)]
    if unknown or bad:
        problems = ([f"unknown {', '.join(unknown)}"] if unknown else []) + (
            [f"{', '.join(bad)} missing or not text"] if bad else []
        )
        raise PlanError(f"step {index} ({kind.tool}): {'; '.join(problems)}")
    return kind(**{name: row[name] for name in names})
