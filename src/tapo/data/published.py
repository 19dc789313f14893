"""TAPO's published dataset (``Goer17/TAPO`` on the hub) read into tapo rows.

The original recipe (``recipe/tapo/src/data_proc/tapo.py``) reads ``{train,test}.parquet`` with the columns
``question``, ``data_source``, ``ability`` and ``reward_model``, verl's nested struct whose ``ground_truth`` holds the
gold answer(s): a string, a list, or ``{"target": ...}`` (its scorer accepts all three). The recipe renders the prompt
itself, so ``question`` is the bare question, which is what an :class:`Example` holds too.

Every row either converts, converts after an unambiguous repair (a single gold made a list, a numeric gold made
text, surrounding whitespace stripped), or is dropped (no question, no gold, a repeated question, a data source no
scorer knows); each kind is counted, so the build reports what it changed instead of changing it silently. The
published ``test`` split becomes tapo's ``validation`` file: the original evaluates on it during training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tapo.data.io import DataError, save_examples, sha256_files
from tapo.data.schema import Example
from tapo.data.sources import question_key
from tapo.io.atomic import write_json

HUB_ID = "Goer17/TAPO"
SPLITS = {"train": "train", "test": "validation"}
"""Published split -> tapo split (and output file name)."""
COLUMNS = ("question", "data_source", "ability", "reward_model")
DEFAULT_SOURCE = "default"
"""The data_source TAPO's scorer assumes when a row names none."""

ScorerLookup = Callable[[str], str | None]
"""data_source -> the scorer name that will score it, or None when no scorer knows it (the rewards' registry)."""


@dataclass
class Tally:
    """Rows read and kept per split, and each kind of repair or drop with its count per split."""

    read: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)
    repaired: dict[str, Counter[str]] = field(default_factory=dict)
    dropped: dict[str, Counter[str]] = field(default_factory=dict)

    def note(self, table: dict[str, Counter[str]], kind: str, split: str) -> None:
        table.setdefault(kind, Counter())[split] += 1

    def lines(self) -> list[str]:
        """One line per kind: ``dropped  no gold answer: 3 (train 2, test 1)``."""
        out = []
        for verb, table in (("repaired", self.repaired), ("dropped", self.dropped)):
            for kind, counts in sorted(table.items()):
                where = ", ".join(f"{split} {count}" for split, count in counts.items())
                out.append(f"{verb}  {kind}: {sum(counts.values())} ({where})")
        return out


def _text(value: Any) -> str | None:
    """A gold or question as text; integral floats lose their '.0' (golds are compared as strings)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, str | int | float) else None


def _golds(reward_model: Any, repairs: list[str]) -> list[str]:
    """The gold answers under ``reward_model.ground_truth`` (str, list or ``{"target": ...}``); [] when none."""
    truth = reward_model.get("ground_truth") if isinstance(reward_model, Mapping) else None
    if isinstance(truth, Mapping):
        truth = truth.get("target")
    if truth is None:
        return []
    if isinstance(truth, str | int | float) and not isinstance(truth, bool):
        repairs.append("ground_truth a single answer, made a list")
        truth = [truth]
    if not isinstance(truth, Iterable) or isinstance(truth, str | bytes | Mapping):
        return []
    values = list(truth)  # a list, or a numpy array from a parquet list column
    if any(not isinstance(value, str) for value in values):
        repairs.append("gold not a string, made text")
    texts = [_text(value) for value in values]
    golds = [text.strip() for text in texts if text is not None and text.strip()]
    if len(golds) < len(values):
        repairs.append("empty or non-text gold removed")
    elif any(gold != text for gold, text in zip(golds, texts, strict=True)):
        repairs.append("whitespace around a gold stripped")
    return golds


def convert_row(row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """One published row as the fields of an Example (id, split and meta are the caller's), the repairs made, and
    why it was dropped (None when kept)."""
    repairs: list[str] = []
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        return None, repairs, "question missing or empty"
    if question != question.strip():
        repairs.append("whitespace around the question stripped")
    source = row.get("data_source")
    if not isinstance(source, str) or not source.strip():
        repairs.append(f"data_source missing, set to {DEFAULT_SOURCE!r}")
        source = DEFAULT_SOURCE
    golds = _golds(row.get("reward_model"), repairs)
    if not golds:
        return None, repairs, "no gold answer under reward_model.ground_truth"
    ability = row.get("ability") if isinstance(row.get("ability"), str) and row.get("ability") else "general"
    fields = {"question": question.strip(), "data_source": source.strip(), "ability": ability, "golds": golds}
    return fields, repairs, None


def convert_split(
    rows: Iterable[Mapping[str, Any]], split: str, scorer_for: ScorerLookup, tally: Tally, origin: str
) -> list[Example]:
    """Convert one published split; repeated questions (case and spacing ignored) keep their first row."""
    examples: list[Example] = []
    seen: set[str] = set()
    for number, row in enumerate(rows):
        tally.read[split] += 1
        fields, repairs, dropped = convert_row(row)
        if fields is not None and question_key(fields["question"]) in seen:
            fields, dropped = None, "repeated question"
        if fields is not None and scorer_for(fields["data_source"]) is None:
            fields, dropped = None, f"data_source {fields['data_source']!r} has no scorer"
        if fields is None:
            tally.note(tally.dropped, dropped or "", split)
            continue
        for repair in dict.fromkeys(repairs):
            tally.note(tally.repaired, repair, split)
        seen.add(question_key(fields["question"]))
        meta = {"source": origin, "row": number}
        examples.append(Example(id=f"tapo-{split}-{number}", split=SPLITS[split], meta=meta, **fields))
        tally.kept[split] += 1
    return examples


def load_published(location: str | Path) -> tuple[dict[str, Any], str]:
    """The published splits as ``datasets`` datasets, and where they came from: ``hf:OWNER/NAME`` loads the hub
    dataset, anything else is a directory holding ``train.parquet`` and ``test.parquet``."""
    import datasets

    text = str(location)
    if text.startswith("hf:"):
        hub_id = text.removeprefix("hf:")
        loaded = datasets.load_dataset(hub_id)
        missing = [split for split in SPLITS if split not in loaded]
        if missing:
            raise DataError(f"{text}: no {'/'.join(missing)} split (has {', '.join(loaded)}); expected {list(SPLITS)}")
        return {split: loaded[split] for split in SPLITS}, text
    directory = Path(location)
    files = {split: directory / f"{split}.parquet" for split in SPLITS}
    absent = [str(path) for path in files.values() if not path.is_file()]
    if absent:
        raise DataError(
            f"{', '.join(absent)} not found: TAPO's published layout is DIR/train.parquet and DIR/test.parquet "
            f"(download hf:{HUB_ID}, or pass --data hf:{HUB_ID} where the hub is reachable)"
        )
    loaded = {
        split: datasets.load_dataset("parquet", data_files=str(path), split="train") for split, path in files.items()
    }
    for split, dataset in loaded.items():
        if missing := [column for column in ("question", "reward_model") if column not in dataset.column_names]:
            raise DataError(
                f"{files[split]}: no column {', '.join(missing)} (has {', '.join(dataset.column_names)}); "
                f"TAPO's layout has {', '.join(COLUMNS)}"
            )
    return loaded, str(directory)


def build_published(location: str | Path, out_dir: str | Path, scorer_for: ScorerLookup) -> dict[str, Any]:
    """Read TAPO's published splits from ``location`` into ``out_dir`` (train.parquet, validation.parquet,
    manifest.json) and return the manifest: counts and scorer per data source, and every repair and drop."""
    splits, origin = load_published(location)
    tally = Tally()
    converted = {split: convert_split(rows, split, scorer_for, tally, origin) for split, rows in splits.items()}
    if not converted["train"]:
        raise DataError(f"{origin}: no usable training row ({'; '.join(tally.lines()) or 'the split is empty'})")
    out = Path(out_dir)
    files = [save_examples(rows, out / f"{SPLITS[split]}.parquet") for split, rows in converted.items()]
    sources = sorted({row.data_source for rows in converted.values() for row in rows})
    manifest = {
        "name": "tapo",
        "origin": origin,
        "read": dict(tally.read),
        "kept": dict(tally.kept),
        "counts": {
            SPLITS[split]: dict(sorted(Counter(row.data_source for row in rows).items()))
            for split, rows in converted.items()
        },
        "scorers": {source: scorer_for(source) for source in sources},
        "repaired": {kind: dict(counts) for kind, counts in sorted(tally.repaired.items())},
        "dropped": {kind: dict(counts) for kind, counts in sorted(tally.dropped.items())},
        "report": tally.lines(),
        "sha256": sha256_files(files),
    }
    write_json(out / "manifest.json", manifest)
    return manifest
