"""Public datasets as sources of ``Example`` rows: where each lives on the hub and how its columns convert.

There is one code path for the hub and for local copies: ``load_raw`` calls ``datasets.load_dataset`` either with
the hub id or with a local file that has the hub's columns (``SOURCE_DIR/<key>/<split>.jsonl|.json|.parquet``), so
tests on small fixture files exercise exactly the conversion that runs on the real data. Machines without hub
access point ``--source-dir`` at files they copied from the hub.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapo.data.io import DataError
from tapo.data.schema import Example

Converted = tuple[str, list[str], dict[str, Any]]
"""(question, gold answers, extra meta) for one source row; a converter returns None for a row it filters out."""

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
_DAPO_PREFIX = re.compile(r"^Solve the following math problem step by step\..*?\n\n", re.DOTALL)
_DAPO_SUFFIX = re.compile(r"\n\nRemember to put your answer on its own line after \"Answer:\"\.?\s*$")


@dataclass(frozen=True)
class Source:
    """One split of one public dataset and its converter. ``key`` names the local copy's directory."""

    key: str
    hub_id: str
    split: str
    convert: Callable[[Mapping[str, Any]], Converted | None]
    data_source: str
    ability: str
    config: str | None = None

    def describe(self) -> str:
        config = f" ({self.config})" if self.config else ""
        return f"{self.hub_id}{config} [{self.split}]"


def _golds(values: Iterable[Any]) -> list[str]:
    return [text for text in (str(value).strip() for value in values if value is not None) if text]


def _question(text: str) -> str:
    """NQ-style questions come lower-case without a question mark; give them one so they read as questions."""
    text = " ".join(str(text).split())
    return text if text.endswith("?") else f"{text}?"


def nq_open(row: Mapping[str, Any]) -> Converted | None:
    """google-research-datasets/nq_open: ``question``, ``answer`` (list). Keeps short answers (≤ 5 words)."""
    golds = _golds(row["answer"])
    if not golds or any(len(gold.split()) > 5 for gold in golds):
        return None
    return _question(row["question"]), golds, {}


def hotpotqa(levels: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Converted | None]:
    """hotpotqa/hotpot_qa (distractor): ``id, question, answer, type, level, ...``; keeps the given levels."""

    def convert(row: Mapping[str, Any]) -> Converted | None:
        golds = _golds([row["answer"]])
        if row["level"] not in levels or not golds:
            return None
        return _question(row["question"]), golds, {"source_id": row["id"], "level": row["level"], "type": row["type"]}

    return convert


def gsm8k(row: Mapping[str, Any]) -> Converted | None:
    """openai/gsm8k (main): ``question``, ``answer`` with the final number after '####' (commas removed)."""
    if "####" not in row["answer"]:
        return None
    return row["question"].strip(), [row["answer"].split("####")[-1].strip().replace(",", "")], {}


def dapo_math(row: Mapping[str, Any]) -> Converted | None:
    """BytedTsinghua-SIA/DAPO-Math-17k: a chat ``prompt`` wrapped in DAPO's instruction, ``reward_model.ground_truth``.

    The instruction ("Solve the following math problem ... Answer:") is removed: TAPO renders its own prompt.
    """
    content = row["prompt"][0]["content"]
    problem = _DAPO_SUFFIX.sub("", _DAPO_PREFIX.sub("", content, count=1)).strip()
    golds = _golds([row["reward_model"]["ground_truth"]])
    if not problem or not golds:
        return None
    return problem, golds, {"source_id": str((row.get("extra_info") or {}).get("index", ""))}


def deepmath(min_difficulty: float, max_answer_chars: int = 32) -> Callable[[Mapping[str, Any]], Converted | None]:
    """zwhe99/DeepMath-103K: ``question, final_answer, difficulty, topic, r1_solution_*``.

    Keeps problems at or above ``min_difficulty`` whose answer is short enough to match exactly.
    """

    def convert(row: Mapping[str, Any]) -> Converted | None:
        golds = _golds([row["final_answer"]])
        if float(row["difficulty"]) < min_difficulty or not golds or len(golds[0]) > max_answer_chars:
            return None
        return row["question"].strip(), golds, {"difficulty": float(row["difficulty"]), "topic": row["topic"]}

    return convert


def problem_answer(row: Mapping[str, Any]) -> Converted | None:
    """HuggingFaceH4/aime_2024 and HuggingFaceH4/MATH-500: ``problem``, ``answer`` (+ ids, level, subject)."""
    golds = _golds([row["answer"]])
    if not golds:
        return None
    keep = ("id", "unique_id", "level", "subject", "year")
    return row["problem"].strip(), golds, {key: row[key] for key in keep if row.get(key) is not None}


def flashrag(row: Mapping[str, Any]) -> Converted | None:
    """RUC-NLPIR/FlashRAG_datasets (Search-R1's evaluation rows): ``id, question, golden_answers, metadata``."""
    golds = _golds(row["golden_answers"])
    if not golds:
        return None
    return _question(row["question"]), golds, {"source_id": str(row["id"])}


def local_file(source: Source, source_dir: str | Path) -> Path:
    """The local copy of ``source``: ``source_dir/<key>/<split>`` with a JSONL, JSON-lines or parquet suffix."""
    base = Path(source_dir) / source.key / source.split
    for suffix in LOCAL_SUFFIXES:
        if base.with_suffix(suffix).is_file():
            return base.with_suffix(suffix)
    raise DataError(
        f"{base}.jsonl (or .json/.parquet) not found: a local copy of {source.describe()} with the hub's columns"
    )


def load_raw(source: Source, source_dir: str | Path | None = None) -> Any:
    """The raw rows of ``source`` as a ``datasets.Dataset``, from the hub or from its local copy."""
    import datasets

    if source_dir is None:
        return datasets.load_dataset(source.hub_id, source.config, split=source.split)
    path = local_file(source, source_dir)
    builder = "parquet" if path.suffix == ".parquet" else "json"
    return datasets.load_dataset(builder, data_files=str(path), split="train")


def question_key(question: str) -> str:
    """Questions that differ only in case or spacing are the same question."""
    return " ".join(question.lower().split())


@dataclass
class Conversion:
    """Examples converted from one source, and how many rows its filter skipped or were repeated questions."""

    examples: list[Example]
    filtered: int = 0
    duplicates: int = 0

    @property
    def read(self) -> int:
        return len(self.examples) + self.filtered + self.duplicates


def convert(source: Source, rows: Iterable[Mapping[str, Any]], split: str, seen: set[str] | None = None) -> Conversion:
    """Convert raw rows to Examples with ids ``<key>-<split>-<row>``.

    With ``seen`` (question keys), a question already there is counted as a duplicate and skipped before an Example
    is built, and new ones are added to it: DAPO-Math-17k repeats each of its problems about 100 times, so
    de-duplicating late would build 1.8 M Examples for 18 K problems. A row missing a column the converter needs
    raises ``DataError`` naming the source and row: a wrong file is a clear error, not a silently empty dataset.
    """
    result = Conversion([])
    for number, row in enumerate(rows):
        try:
            converted = source.convert(row)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise DataError(
                f"{source.describe()}, row {number + 1}: cannot convert ({type(error).__name__}: {error})"
            ) from error
        if converted is None:
            result.filtered += 1
            continue
        question, golds, meta = converted
        if seen is not None:
            key = question_key(question)
            if key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
        result.examples.append(
            Example(
                id=f"{source.key}-{source.split}-{number}",
                question=question,
                data_source=source.data_source,
                ability=source.ability,
                golds=golds,
                split=split,
                meta={"source": source.hub_id, **meta},
            )
        )
    return result
