"""Run directories: ``runs/<name>/`` with the resolved config, metrics, checkpoints, trajectories, report.

A run directory is self-contained: each checkpoint's ``model/`` holds the weights and the config they were trained
with (:data:`TRAINED_CONFIG_FILE`), so using the model later needs neither guessing nor a ``--config``.

One process writes a run at a time: :class:`RunLock` holds an ``flock`` on ``runs/<name>/.lock`` for the life of
the run, so a second ``tapo train``/``tapo sft`` on the same directory stops with one line naming the holder's
pid instead of interleaving rows with it. The kernel drops the lock when the holder dies, even by ``kill -9``.
``tapo pipeline run`` holds the same lock on its job directory. Each command takes it before it decides anything
from what the directory holds ("finished", "not started", which checkpoint to resume): a decision made before
would be stale by the time the lock is free.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tapo.config.loader import dump_config
from tapo.config.relative_paths import absolute_paths
from tapo.config.schema import TapoConfig
from tapo.io.atomic import append_jsonl, read_jsonl, write_jsonl, write_text

LOCK_FILE = ".lock"
TRAINED_CONFIG_FILE = "tapo-config.yaml"
"""Beside the weights of every checkpoint's ``model/``: the resolved config the model was trained with (template,
tools, search index, rollout caps), which ``tapo chat`` and ``tapo eval`` start from when given the model."""


class RunLocked(RuntimeError):
    """Another live process writes this run directory."""


class RunLock:
    """An exclusive ``flock`` on ``<root>/.lock`` that holds the owner's pid; ``with RunLock(root):``.

    The file stays after release (removing it would let two processes lock two different files); its pid is
    only read while someone holds the lock, so a stale pid from a finished run is never reported.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(
                f"{self.path.parent} is in use by another tapo process (pid {holder}, lock {self.path}); "
                "wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def run_config_text(config: TapoConfig) -> str:
    """The resolved config as a run records it (``config.yaml``, :data:`TRAINED_CONFIG_FILE`): YAML with every path
    absolute, so ``tapo chat``/``tapo eval`` of the run find its data and index from any directory."""
    return dump_config(absolute_paths(config))


def trained_config(model_dir: Path) -> Path | None:
    """The config the model in ``model_dir`` was trained with: its own copy, else (a checkpoint written before
    checkpoints carried one) its run's ``config.yaml`` three levels up (``run/checkpoints/step-N/model``)."""
    own = model_dir / TRAINED_CONFIG_FILE
    if own.is_file():
        return own
    checkpoints = model_dir.parent.parent
    if (
        model_dir.name == "model"
        and checkpoints.name == "checkpoints"
        and (checkpoints.parent / "config.yaml").is_file()
    ):
        return checkpoints.parent / "config.yaml"
    return None


@dataclass(frozen=True)
class RunDir:
    """The layout of one run directory; creating it writes the resolved config."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def trajectories_file(self) -> Path:
        return self.root / "trajectories.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @classmethod
    def create(cls, config: TapoConfig) -> RunDir:
        run = cls(Path(config.run.output_dir) / config.run.name)
        run.root.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        write_text(run.config_file, run_config_text(config))
        return run

    def trim(self, step: int) -> None:
        """Keep only the metric and trajectory rows of steps up to ``step``: a run that restarts from the
        checkpoint of ``step`` (0: from scratch) is about to log the later steps again, so the rows an earlier
        attempt wrote after that point would otherwise come out twice."""
        for path in (self.metrics_file, self.trajectories_file):
            if path.exists():
                write_jsonl(path, [row for row in read_jsonl(path) if row.get("step", 0) <= step])

    def log_metrics(self, row: dict[str, Any]) -> None:
        append_jsonl(self.metrics_file, [row])

    def log_trajectories(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            append_jsonl(self.trajectories_file, rows)
