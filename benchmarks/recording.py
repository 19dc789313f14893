"""One benchmark run from start to saved results: the machine's state around it, its figures, and the files.

It sits above both :mod:`harness` (which measures) and :mod:`figures` (which renders), so that neither imports the
other's caller: harness <- figures <- recording <- the ``bench_*.py`` scripts. A run saves its JSON (what
``figures.py --results`` reads back for docs/benchmarks.md) with its markdown and PNG next to it.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from figures import plot, run_markdown
from harness import Figure, host, machine_state, run_warnings, warnings_of


@dataclass
class Run:
    """One benchmark run: its command, the host, the machine's state before and after, and its figures."""

    benchmark: str
    quick: bool
    command: str = field(default_factory=lambda: shlex.join([sys.executable, *sys.argv]))
    host: dict[str, Any] = field(default_factory=host)
    started: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        return run_warnings(self.before, self.after)

    def save(self, out_dir: Path) -> Path:
        """``<benchmark>.json``, ``.md`` and ``.png`` in ``out_dir``; returns the JSON's path."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.benchmark}.json"
        path.write_text(json.dumps(asdict(self) | {"warnings": self.warnings()}, indent=1) + "\n")
        (out_dir / f"{self.benchmark}.md").write_text(run_markdown(asdict(self)))
        plot(asdict(self), out_dir / f"{self.benchmark}.png")
        return path


@contextmanager
def recorded(benchmark: str, quick: bool, out_dir: Path, say: Callable[[str], None] = print) -> Iterator[Run]:
    """A :class:`Run` whose machine state is taken before and after the block, saved and warned about at the end."""
    run = Run(benchmark, quick)
    run.before = machine_state()
    for line in warnings_of(run.before, "before the run"):
        say(f"WARNING {line}")
    try:
        yield run
    finally:
        run.after = machine_state()
        path = run.save(out_dir)
        for line in run.warnings():
            say(f"WARNING {line}")
        say(f"results: {path} (and .md, .png)")
