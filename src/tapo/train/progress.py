"""A live progress line for training loops (RL and SFT): steps done, time left, and the latest metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def step_progress(
    total: int, done: int, description: str, keys: Sequence[str], enabled: bool = True, console: Console | None = None
) -> Iterator[Callable[[dict[str, float]], None]]:
    """Yield ``update(row)``: advance one step and show ``keys`` of ``row`` (short names, 3 significant digits)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console or Console(stderr=True),
        disable=not enabled,
    )
    with progress:
        task = progress.add_task(description, total=total, completed=done, info="")

        def update(row: dict[str, float]) -> None:
            info = "  ".join(f"{k.rsplit('/', 1)[-1]}={row[k]:.3g}" for k in keys if k in row)
            progress.update(task, advance=1, info=info)

        yield update
