"""Reading a JSONL file line by line, with each bad line named rather than failing the whole file.

Lines are decoded one by one: decoding the file as a whole would let one stray byte fail every row, with no
line number. Datasets drop or refuse a bad line; demonstrations refuse it; both say the same thing about it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, BinaryIO


class JsonLineError(ValueError):
    """A line that is not UTF-8 or not JSON; the message says which, and where in the line."""


class LineTooLong(JsonLineError):
    """A line over the reader's byte cap: skipped unread, so one huge row never sits in memory."""


def _raw_lines(handle: BinaryIO, max_bytes: int | None) -> Iterator[bytes | LineTooLong]:
    """Each line's bytes, or :class:`LineTooLong` for one over ``max_bytes`` (read past in 1 MiB pieces)."""
    while data := handle.readline(max_bytes + 1 if max_bytes else -1):
        if max_bytes is None or len(data) <= max_bytes or data.endswith(b"\n"):
            yield data
            continue
        size = len(data)
        while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
            size += len(rest)
        yield LineTooLong(f"a line of {size + len(rest)} bytes, over the {max_bytes} one row may take")


def jsonl_lines(path: str | os.PathLike[str], max_bytes: int | None = None) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line; a line that cannot be read (or is longer than
    ``max_bytes``: :class:`LineTooLong`) comes back as a :class:`JsonLineError` value, so the caller decides to
    drop it or raise."""
    with open(path, "rb") as handle:
        for number, data in enumerate(_raw_lines(handle, max_bytes), start=1):
            if isinstance(data, LineTooLong):
                yield number, data
                continue
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as error:
                yield number, JsonLineError(f"not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})")
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, JsonLineError(f"invalid JSON ({error.msg} at column {error.colno})")
