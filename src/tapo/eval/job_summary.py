"""The main job's results as a type: what ``summary.json`` holds, written by :mod:`tapo.pipeline.summary` and
read by the HTML report (:mod:`tapo.eval.report`).

The writer sits above the reader in the package layering, so the type lives here, where both may import it: a
field renamed on one side is renamed on the other, and a ``summary.json`` that does not match (edited by hand,
cut short) is one clear error naming the key, not a ``KeyError`` half-way through a report.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tapo.io.atomic import write_json
from tapo.stats import Interval, Verdict

SUMMARY_FILE = "summary.json"


class SummaryError(ValueError):
    """A ``summary.json`` that is not JSON or does not match :class:`JobSummary`."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SummaryTable(_Part):
    """A table as summary.md and the report render it."""

    caption: str
    headers: list[str]
    rows: list[list[str]]


class GoalResult(_Part):
    """A goal of the issue, where its interval puts it, and the measurement as printed."""

    goal: str
    verdict: Verdict
    measured: str
    interval: Interval | None


class JobSummary(_Part):
    """The results table and the others, the goals, notes (seed spread, method), the name the table gives each
    directory of the run (``eval/tapo`` → "TAPO (RL on the warm start)") and every paired comparison.

    Summaries written before ``labels``, ``goals`` and ``comparisons`` existed read with those empty.
    """

    title: str = "Results"
    tables: list[SummaryTable]
    notes: list[str] = []
    labels: dict[str, str] = {}
    goals: list[GoalResult] = []
    comparisons: dict[str, Interval | None] = {}

    def save(self, root: Path) -> None:
        write_json(root / SUMMARY_FILE, self.model_dump(mode="json"))

    @classmethod
    def load(cls, root: Path) -> JobSummary | None:
        """``root``'s summary; None when it has none (a training run or an evaluation, not the main job)."""
        path = root / SUMMARY_FILE
        if not path.is_file():
            return None
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as error:
            raise SummaryError(f"{path} is not JSON: {error}") from None
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "top level"
            raise SummaryError(f"{path}: {key}: {first['msg']}") from None
