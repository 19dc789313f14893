"""Resumable stages: each finished stage is recorded in a state file, so an interrupted job picks up where it stopped.

A stage that was interrupted half-way is simply run again; the stages themselves are written so that a rerun
continues (training resumes from its latest checkpoint) or overwrites its outputs atomically.

What the state file records is checked, not believed: a finished stage is skipped only while its outputs are
there and intact (``Stage.verify``, :mod:`tapo.pipeline.outputs`). One whose outputs are missing or damaged runs
again, saying why, and so does every later stage that reads what a stage run in this invocation wrote
(``Stage.needs``): their outputs were made from the old ones.

The runner also keeps the whole-job line: before each stage it prints where the job stands (stage k/n, elapsed,
an estimate of the time left) and hands the same to the stage's process in ``TAPO_JOB`` (``tapo.io.progress``),
whose live display keeps it current. The estimate prices each stage's planned work (questions, demonstrations,
trajectories) at the pace of the finished stages of its kind, else at the mean pace of every finished stage.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from tapo.io.atomic import write_json
from tapo.io.progress import JOB_ENV, JobLine


class StageInterrupted(KeyboardInterrupt):
    """Ctrl-C while a stage ran: still a KeyboardInterrupt, naming the stage so the job can say where it stopped."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[], None]
    work: float = 0.0  # planned units of work (0: too quick to matter in the estimate)
    kind: str = ""  # stages of one kind share a pace (seconds per unit of work)
    collects: bool = False  # reads what the stages before it wrote (the report): rerun whenever one of them ran
    needs: tuple[str, ...] = ()  # the stages whose outputs it reads: rerun whenever one of them ran
    verify: Callable[[], str | None] | None = None  # why its outputs are missing or damaged (None: intact)


def estimate(stages: list[Stage], state: dict[str, dict[str, Any]], index: int) -> tuple[float | None, float | None]:
    """Seconds for ``stages[index]`` and for the unfinished stages after it, at the pace of the finished stages in
    ``state`` (None where no stage with work has finished yet)."""
    seconds: dict[str, float] = {}
    units: dict[str, float] = {}
    for entry in state.values():
        if entry.get("work"):
            kind = str(entry.get("kind", ""))
            seconds[kind] = seconds.get(kind, 0.0) + entry["seconds"]
            units[kind] = units.get(kind, 0.0) + entry["work"]
    overall = sum(seconds.values()) / sum(units.values()) if units else None

    def cost(stage: Stage) -> float | None:
        if not stage.work:
            return 0.0
        pace = seconds[stage.kind] / units[stage.kind] if stage.kind in units else overall
        return None if pace is None else pace * stage.work

    later = [cost(s) for s in stages[index + 1 :] if s.name not in state]
    return cost(stages[index]), None if None in later else sum(c for c in later if c is not None)


class StageRunner:
    """Runs stages in order, skipping those the state file marks as done."""

    def __init__(self, state_file: Path, console: Console) -> None:
        self.state_file = state_file
        self.console = console
        self.state: dict[str, dict[str, Any]] = (
            json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
        )

    def redo_reason(self, stage: Stage, ran: list[str]) -> str | None:
        """Why a stage the state file records as done must run again (``ran``: the stages run so far in this
        invocation), or None when it stays done."""
        if stage.collects and ran:
            return f"{ran[-1]} ran again"
        if redone := [name for name in stage.needs if name in ran]:
            return f"{redone[0]}, whose output it reads, ran again"
        return stage.verify() if stage.verify is not None else None

    def run(self, stages: list[Stage]) -> None:
        job_start = time.time()
        ran: list[str] = []  # the stages run in this invocation (a new baseline or seed, a stage redone)
        for index, stage in enumerate(stages, start=1):
            header = f"[{index}/{len(stages)}] {stage.title}"
            if stage.name in self.state:
                reason = self.redo_reason(stage, ran)
                if reason is None:
                    self.console.print(f"[dim]{header}: done earlier, skipped[/]")
                    continue
                self.console.print(
                    f"[yellow]{header}: done earlier, but {escape(reason)}: running it again[/]", highlight=False
                )
                del self.state[stage.name]  # not done until it finishes again
                write_json(self.state_file, self.state)
            ran.append(stage.name)
            this_s, later_s = estimate(stages, self.state, index - 1)
            job = JobLine(index, len(stages), stage.name, job_start, time.time(), this_s, later_s)
            os.environ[JOB_ENV] = job.to_env()  # the stage's process (a child) draws the job line from it
            self.console.rule(f"[bold]{header}")
            self.console.print(job.render())
            start = time.perf_counter()
            try:
                stage.run()
            except KeyboardInterrupt:
                raise StageInterrupted(header) from None
            finally:
                os.environ.pop(JOB_ENV, None)
            elapsed = time.perf_counter() - start
            entry = {"seconds": round(elapsed, 1), "finished_at": time.time(), "work": stage.work, "kind": stage.kind}
            self.state[stage.name] = entry
            write_json(self.state_file, self.state)
            self.console.print(f"[green]{header}: finished in {elapsed / 60:.1f} min[/]")
