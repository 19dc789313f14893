"""A full disk reported as one plain line that names the path: ``No space left on device: PATH``.

Python's writes fail with ``OSError(ENOSPC)`` but often without a file name (the write failed, not the open).
The libraries that write checkpoints say less: torch's C++ writer (``torch.save``, so accelerate's optimizer
state) fails with ``basic_ios::clear: iostream error`` or ``unexpected pos``, safetensors with its own error
type; neither carries an errno or a path. So a failed checkpoint save that quotes ENOSPC's text, or that
happened on a disk with (almost) no space left, is reported as a full disk, naming what was being written.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FULL_BELOW_BYTES = 1 << 20
"""Free bytes under which a write failure without an errno is taken for a full disk."""


class DiskFullError(OSError):
    """ENOSPC with the path it happened on."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def __str__(self) -> str:
        return f"{self.strerror}: {self.filename}"


def nearly_full(path: str | os.PathLike[str]) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing parent) has under 1 MiB free."""
    probe = Path(path).absolute()
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free < FULL_BELOW_BYTES


@contextmanager
def naming_disk_full(path: str | os.PathLike[str], opaque: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Raise ``DiskFullError(path)`` for ENOSPC in the block, and for an ``opaque`` error (one that carries no
    errno, from a library's own writer) that quotes ENOSPC's text (safetensors, which also deletes its partial
    file) or that happened on a nearly full disk (torch); anything else passes unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise DiskFullError(path) from error
        raise
    except opaque as error:
        if os.strerror(errno.ENOSPC) in str(error) or nearly_full(path):
            raise DiskFullError(path) from error
        raise
