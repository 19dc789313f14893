"""Reading and writing ``Example`` rows (JSONL or parquet) with validation that names the file, row and field.

Real datasets are messy: a gold answer written as a bare string or number, an id stored as an integer, a missing
id. Those are repaired, because the meaning is unambiguous; rows that cannot be understood are dropped. Either way
nothing happens silently: every repair and every drop is counted in a ``LoadReport`` with one line saying where and
why, and ``strict=True`` turns the first problem into a ``DataError`` instead.

In parquet, ``meta`` is stored as a JSON string: meta dicts differ from row to row, and a parquet struct column
would give every row every key (as nulls), so a round trip would not return what was saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tapo.data.schema import Example
from tapo.io.atomic import atomic_open, write_jsonl
from tapo.io.lines import JsonLineError, jsonl_lines

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".json")
MAX_PROBLEM_LINES = 1000
"""Problem lines a report keeps; the counts stay exact beyond it (a file repaired on every row stays cheap)."""
PARQUET_SUFFIXES = (".parquet",)


class DataError(ValueError):
    """A dataset file or row that cannot be used; the message names the file, the row and the field."""


@dataclass
class LoadReport:
    """What loading one file did: rows read, kept, repaired, dropped, and left out for being of another split."""

    path: str
    read: int = 0
    loaded: int = 0
    repaired: int = 0
    dropped: int = 0
    other_split: int = 0
    problems: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    first_dropped: str | None = None
    """Where and why the first row was dropped: the summary's counts alone do not say which line to look at."""

    def summary(self) -> str:
        parts = [f"{self.path}: {self.loaded}/{self.read} rows loaded"]
        if self.repaired:
            parts.append(f"{self.repaired} repaired")
        if self.dropped:
            parts.append(f"{self.dropped} dropped")
        if self.other_split:
            parts.append(f"{self.other_split} of another split")
        if self.reasons:
            parts.append("(" + ", ".join(f"{reason}: {count}" for reason, count in sorted(self.reasons.items())) + ")")
        return ", ".join(parts)


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise DataError(f"{path}: unknown dataset format {suffix!r} (expected .jsonl, .json or .parquet)")


def dataset_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a dataset file, or None when it is a file (its content is checked later)."""
    if path.is_dir():
        return "a directory, not a dataset file (expected .jsonl, .json or .parquet)"
    return None if path.is_file() else "no such dataset file"


def _raw_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number, parsed row) pairs; numbers are 1-based lines for JSONL and 1-based rows for parquet.

    A JSONL line that is not UTF-8 or not JSON comes back as a ``JsonLineError`` value, so the caller decides to
    drop or raise (:func:`tapo.io.lines.jsonl_lines`).
    """
    if _format(path) == "parquet":
        import pyarrow.parquet as pq

        yield from enumerate(pq.read_table(path).to_pylist(), start=1)
        return
    yield from jsonl_lines(path)


def _gold_text(value: Any) -> str | None:
    """A gold answer as text: integral floats lose their '.0' (golds are compared as strings)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _repair(row: dict[str, Any], default_id: str, split: str | None) -> list[str]:
    """Fix unambiguous deviations in place and return what was fixed (empty when nothing was)."""
    fixes = []
    if isinstance(row.get("meta"), str):  # parquet storage form, not a repair
        with contextlib.suppress(json.JSONDecodeError):  # a non-JSON string is left for validation to report
            row["meta"] = json.loads(row["meta"])
    if row.get("meta", {}) is None:
        row["meta"] = {}
    if row.get("id") in (None, ""):
        row["id"] = default_id
        fixes.append("id missing")
    elif isinstance(row["id"], int) and not isinstance(row["id"], bool):
        row["id"] = str(row["id"])
        fixes.append("id not a string")
    golds = row.get("golds")
    if not isinstance(golds, list) and _gold_text(golds) is not None:
        row["golds"] = [_gold_text(golds)]
        fixes.append("golds not a list")
    elif isinstance(golds, list) and any(not isinstance(gold, str) for gold in golds):
        texts = [_gold_text(gold) for gold in golds]
        if all(text is not None for text in texts):
            row["golds"] = texts
            fixes.append("gold not a string")
    if split is not None and "split" not in row:
        row["split"] = split
        fixes.append("split missing")
    return fixes


def _field_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "row"
    return f"field '{where}': {first['msg']}"


def read_examples(
    path: str | os.PathLike[str], split: str | None = None, *, strict: bool = False
) -> tuple[list[Example], LoadReport]:
    """Load ``path`` (JSONL or parquet) into ``Example`` rows and report every repair and drop.

    ``split`` keeps only rows of that split (rows without a split get it). ``strict`` raises ``DataError`` on the
    first repair or bad row instead of fixing or dropping it.
    """
    path = Path(path)
    if problem := dataset_file_problem(path):
        raise DataError(f"{path}: {problem}")
    unit = "row" if _format(path) == "parquet" else "line"
    report = LoadReport(str(path))
    examples: list[Example] = []
    first_seen: dict[str, int] = {}

    def problem(number: int, message: str, reason: str, dropped: bool) -> None:
        text = f"{path}, {unit} {number}: {message}"
        if strict:
            raise DataError(text)
        if len(report.problems) < MAX_PROBLEM_LINES:
            report.problems.append(text)
        report.reasons[reason] += 1
        if dropped:
            report.dropped += 1
            report.first_dropped = report.first_dropped or text

    for number, raw in _raw_rows(path):
        report.read += 1
        if isinstance(raw, JsonLineError) or not isinstance(raw, dict):
            message = str(raw) if isinstance(raw, JsonLineError) else f"expected an object, got {type(raw).__name__}"
            problem(number, message, "not an object", dropped=True)
            continue
        row = dict(raw)
        fixes = _repair(row, f"{path.stem}-{number}", split)
        for fix in fixes:
            problem(number, f"repaired: {fix}", fix, dropped=False)
        report.repaired += bool(fixes)
        try:
            example = Example.model_validate(row)
        except ValidationError as error:
            problem(number, _field_error(error), "invalid field", dropped=True)
            continue
        if example.id in first_seen:
            problem(
                number, f"duplicate id '{example.id}' (first at {unit} {first_seen[example.id]})", "duplicate id", True
            )
            continue
        first_seen[example.id] = number
        if split is not None and example.split != split:
            report.other_split += 1
            continue
        examples.append(example)
    report.loaded = len(examples)
    return examples, report


def load_examples(path: str | os.PathLike[str], split: str | None = None, *, strict: bool = False) -> list[Example]:
    """``read_examples`` without the report; repairs and drops are logged as one warning line, naming the line of
    the first dropped row (``tapo data check`` lists them all)."""
    examples, report = read_examples(path, split, strict=strict)
    if report.dropped:
        logger.warning("%s; first dropped: %s", report.summary(), report.first_dropped)
    elif report.repaired:
        logger.warning("%s", report.summary())
    return examples


def _as_example(row: Example | Mapping[str, Any]) -> Example:
    return row if isinstance(row, Example) else Example.model_validate(dict(row))


def save_examples(rows: Iterable[Example | Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Validate ``rows`` and write them atomically as JSONL or parquet, chosen by the suffix of ``path``."""
    path = Path(path)
    examples = [_as_example(row) for row in rows]
    if _format(path) == "jsonl":
        write_jsonl(path, (example.model_dump() for example in examples))
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{**example.model_dump(), "meta": json.dumps(example.meta, ensure_ascii=False)} for example in examples]
    schema = pa.schema(
        [(name, pa.string()) for name in ("id", "question", "data_source", "ability")]
        + [("golds", pa.list_(pa.string())), ("split", pa.string()), ("meta", pa.string())]
    )
    with atomic_open(path, "wb") as handle:
        pq.write_table(pa.Table.from_pylist(records, schema=schema), handle)
    return path


def sha256_files(paths: Iterable[Path]) -> dict[str, str]:
    """File name -> sha256 of its bytes: what a dataset manifest records of the files it wrote."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
