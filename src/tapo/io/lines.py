"""Reading a JSONL file line by line, with each bad line named rather than failing the whole file.

Lines are decoded one by one: decoding the file as a whole would let one stray byte fail every row, with no
line number. Datasets drop or refuse a bad line; demonstrations refuse it; both say the same thing about it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any


class JsonLineError(ValueError):
    """A line that is not UTF-8 or not JSON; the message says which, and where in the line."""


def jsonl_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line; a line that cannot be read comes back as a
    :class:`JsonLineError` value, so the caller decides to drop it or raise."""
    with open(path, "rb") as handle:
        for number, data in enumerate(handle, start=1):
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
