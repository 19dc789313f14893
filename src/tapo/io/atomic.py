"""Atomic file writes: a temporary file in the target's directory, fsync, then rename.

Every file the project writes goes through these helpers so that an interrupted run never leaves a
half-written file behind: readers see either the old content or the new content, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tapo.io.space import naming_disk_full


def _read_umask() -> int:
    """The process umask. Reading it means setting it, so it is set straight back, once, at import (a umask
    flipped while other threads create files would give their files the wrong permissions)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing and rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched; a full disk is a ``DiskFullError``
    naming ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    with naming_disk_full(target):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            # mkstemp creates the file 0600; the result gets the permissions a plain open() would have given it.
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
    with atomic_open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def append_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
    """Append rows to a JSONL file atomically: the new file is the old content plus the rows.

    Rewriting keeps the all-or-nothing guarantee (a crash never leaves half a line), at the cost of
    copying the file; metric files stay small enough for that to be cheap.
    """
    target = Path(path)
    old = target.read_bytes() if target.exists() else b""
    new = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows).encode()
    write_bytes(target, old + new)


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
