"""Resumable stages: each finished stage is recorded in a state file, so an interrupted job picks up where it stopped.

A stage that was interrupted half-way is simply run again; the stages themselves are written so that a rerun
continues (training resumes from its latest checkpoint) or overwrites its outputs atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tapo.io.atomic import write_json


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[], None]


class StageRunner:
    """Runs stages in order, skipping those the state file marks as done."""

    def __init__(self, state_file: Path, console: Console) -> None:
        self.state_file = state_file
        self.console = console
        self.state: dict[str, dict[str, float]] = (
            json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
        )

    def is_done(self, name: str) -> bool:
        return name in self.state

    def run(self, stages: list[Stage]) -> None:
        for index, stage in enumerate(stages, start=1):
            header = f"[{index}/{len(stages)}] {stage.title}"
            if self.is_done(stage.name):
                self.console.print(f"[dim]{header}: done earlier, skipped[/]")
                continue
            self.console.rule(f"[bold]{header}")
            start = time.perf_counter()
            stage.run()
            elapsed = time.perf_counter() - start
            self.state[stage.name] = {"seconds": round(elapsed, 1), "finished_at": time.time()}
            write_json(self.state_file, self.state)
            self.console.print(f"[green]{header}: finished in {elapsed / 60:.1f} min[/]")
