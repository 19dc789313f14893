"""Cheap integrity checks of checkpoint files: each file's header or index is read, never its tensors.

A truncated or overwritten weight file otherwise surfaces deep inside ``from_pretrained`` or accelerate's
``load_state`` as ``SafetensorError: invalid header length``, with no path and after the model has started to
load. These checks take milliseconds, so a command can run them before any work and name the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

# What torch.save writes (weights, optimizer and scheduler states, accelerate's RNG states): zip archives.
TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".pkl")


class CorruptFileError(ValueError):
    """A checkpoint file that cannot be read: its ``path`` and the reader's ``reason``."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is corrupt or truncated ({reason})")
        self.path = path
        self.reason = reason


def _check_safetensors(path: Path) -> None:
    from safetensors import safe_open  # lazy: the package loads only when a checkpoint is checked

    with safe_open(str(path), "pt") as handle:  # parses the header and checks it covers the whole file
        handle.keys()


def _check_torch(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:  # the central directory sits at the end: a truncated file has none
        archive.namelist()


def _check_json(path: Path) -> None:
    json.loads(path.read_text(encoding="utf-8"))


def check_file(path: Path) -> None:
    """Raise :class:`CorruptFileError` naming ``path`` when its header, index or JSON cannot be read."""
    if path.suffix == ".safetensors":
        check = _check_safetensors
    elif path.suffix in TORCH_SUFFIXES:
        check = _check_torch
    elif path.suffix == ".json":
        check = _check_json
    else:
        return
    try:
        check(path)
    except Exception as error:  # each reader has its own error types; all of them mean the same here
        reason = str(error).strip() or type(error).__name__
        raise CorruptFileError(path, reason) from None


def check_files(directory: Path) -> None:
    """Check every weight, state and JSON file under ``directory`` (see :func:`check_file`)."""
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            check_file(path)
