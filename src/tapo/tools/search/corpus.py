"""Passages on disk: row validation, the corpus file every index keeps beside itself, and atomic index directories.

Every index directory holds ``corpus.jsonl`` (one passage per line) and ``corpus.offsets.npy`` (the byte offset of
each line), so a passage is read straight from a memory map by its row number: a large corpus never has to fit in
memory, and the bm25 and dense indexes share one way to store and fetch passages.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tapo.io.atomic import atomic_open, write_json

CORPUS_FILE = "corpus.jsonl"
OFFSETS_FILE = "corpus.offsets.npy"
META_FILE = "meta.json"


class CorpusError(ValueError):
    """A corpus row that is not a ``{id, title, text}`` object; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass(frozen=True)
class Passage:
    """One retrieved passage; ``score`` is the backend's relevance (higher is better)."""

    id: str
    title: str
    text: str
    score: float = 0.0

    @property
    def contents(self) -> str:
        """Search-R1's document field: the quoted title, a newline, then the text."""
        return f'"{self.title}"\n{self.text}'


def validate_row(row: Any, line: int = 0) -> dict[str, str]:
    """Return ``{id, title, text}`` as strings, or raise ``CorpusError`` saying what is wrong.

    ``id`` may be an integer (many corpora number their passages); ``title`` may be missing; ``text`` must be a
    non-empty string because an empty passage can never be retrieved.
    """
    if not isinstance(row, dict):
        raise CorpusError(line, f"expected a JSON object, got {type(row).__name__}")
    row_id, title, text = row.get("id"), row.get("title", ""), row.get("text")
    if isinstance(row_id, bool) or not isinstance(row_id, str | int) or str(row_id) == "":
        raise CorpusError(line, "'id' must be a non-empty string or an integer")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise CorpusError(line, "'title' must be a string")
    if not isinstance(text, str) or not text.strip():
        raise CorpusError(line, "'text' must be a non-empty string")
    return {"id": str(row_id), "title": title, "text": text}


def parse_corpus_lines(
    lines: Iterable[str | bytes], errors: list[CorpusError] | None = None
) -> Iterator[dict[str, str]]:
    """Yield the valid rows among JSONL ``lines`` (numbered from 1; blank lines skipped).

    With ``errors`` given, bad rows are appended to it and skipped (a large corpus should not fail on one bad
    line); without it the first bad row raises.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            try:
                parsed = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise CorpusError(number, f"invalid JSON ({error})") from None
            yield validate_row(parsed, number)
        except CorpusError as error:
            if errors is None:
                raise
            errors.append(error)


def read_corpus_jsonl(
    path: str | os.PathLike[str], errors: list[CorpusError] | None = None
) -> Iterator[dict[str, str]]:
    """``parse_corpus_lines`` over a JSONL file."""
    with open(path, "rb") as handle:
        yield from parse_corpus_lines(handle, errors)


def write_corpus(rows: Iterable[Any], out_dir: Path) -> Iterator[dict[str, str]]:
    """Validate and store ``rows`` in ``out_dir`` while yielding each one, so an index can consume them in one pass.

    Raises ``CorpusError`` on a bad row (with its position) and ``ValueError`` on an empty corpus.
    """
    offsets: list[int] = []
    with atomic_open(out_dir / CORPUS_FILE, "wb") as handle:
        for number, raw in enumerate(rows, start=1):
            row = validate_row(raw, number)
            offsets.append(handle.tell())
            handle.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
            yield row
    if not offsets:
        raise ValueError("the corpus has no passages")
    with atomic_open(out_dir / OFFSETS_FILE, "wb") as handle:
        np.save(handle, np.asarray(offsets, dtype=np.int64))


class CorpusStore:
    """Random access to the stored passages through a memory map; cheap to open, safe to share between threads."""

    def __init__(self, index_dir: Path) -> None:
        self._file = open(index_dir / CORPUS_FILE, "rb")  # noqa: SIM115 - kept open for the memory map's lifetime
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self._offsets = np.load(index_dir / OFFSETS_FILE, mmap_mode="r")

    def __len__(self) -> int:
        return len(self._offsets)

    def passage(self, row: int, score: float) -> Passage:
        start = int(self._offsets[row])
        end = self._map.find(b"\n", start)
        record = json.loads(self._map[start : end if end >= 0 else len(self._map)])
        return Passage(id=record["id"], title=record["title"], text=record["text"], score=float(score))

    def close(self) -> None:
        self._map.close()
        self._file.close()


def read_meta(index_dir: Path) -> dict[str, Any]:
    """The index's ``meta.json`` (its kind, size and settings), with a clear error when the directory is no index."""
    path = Path(index_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{index_dir} is not a search index (no {META_FILE}); build one with `tapo index build`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def publish_dir(out_dir: Path, meta: dict[str, Any]) -> Iterator[Path]:
    """Build an index in a temporary sibling directory and move it over ``out_dir`` only when it is complete.

    Readers (a running server, another process) see the old index or the new one, never a half-written one; a
    failed build leaves ``out_dir`` as it was. ``meta`` may be updated inside the block; it is written last, with a
    fresh ``build_id`` that tells caches a rebuilt index apart from the old one.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / META_FILE).is_file():
        raise FileExistsError(f"{out_dir} exists and is not a search index; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".building", dir=out_dir.parent))
    try:
        yield staging
        write_json(staging / META_FILE, meta | {"build_id": uuid.uuid4().hex})
        if out_dir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, retired / "index")
            os.replace(staging, out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
