"""Live progress for every long loop of tapo, in one place: evaluation, RL steps with their phases, SFT steps, and
the main job's whole-job line.

Every display counts done/total in the loop's own unit (trajectories, steps) and estimates the time left from
the units done since it started (rich's own estimate only looks at the last 30 s, so a 4-minute step would never
get one). All of it is drawn on :data:`console`, the process's one stderr console: the log handler of the CLI
writes to the same console, so a warning prints above the live display instead of inside its line.

A stage of the main job runs as its own process; the job passes where it stands in the environment variable
:data:`JOB_ENV` (:class:`JobLine`), and the stage's display draws it as its first line with a live estimate for
the whole job (the stage's own estimate plus the job's estimate of the stages after it).

Off a terminal (CI logs, a file) nothing can be redrawn: instead of a live display, a task prints one plain line
when it ends and at most one every :data:`PLAIN_EVERY_S` seconds while it moves.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Column
from rich.text import Text

console = Console(stderr=True)
"""The process's stderr console: progress displays, log records and one-line errors share it."""

JOB_ENV = "TAPO_JOB"
PLAIN_EVERY_S = 30.0
_RESET_ARGUMENTS = frozenset({"start", "total", "completed", "visible", "description"})
"""rich's ``Progress.reset`` keywords; any other keyword is a task field."""


def clock(seconds: float | None) -> str:
    """``H:MM:SS``, or ``?`` for an unknown duration."""
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def time_left(task: Task) -> float | None:
    """Seconds left at the pace since the task's first unit was done (None before any unit is done).

    The first unit's time is start-up: a model loading, or, where units run concurrently (an evaluation samples
    a whole engine batch of questions at once), the time the batch took to fill, during which the short questions
    finish first and the pace from the start says several times too long. So once two units are done the pace is
    measured from the first one on; with one done, a sequential task (RL or SFT steps) takes the mean pace from its
    start and a concurrent one (``fields["concurrent"]``) has no estimate yet.

    A task whose units finish in bursts can say how much of its work is done in ``fields["work"]`` (a share, 0 to
    1: the share of an evaluation's engine work done, :func:`tapo.eval.runner.work_share`); while that share is
    known and not whole, the pace is the share done per second since the task started, whatever the unit count says.

    ``fields["done_before"]`` is what was done before timing began (a resumed run's steps), which the pace leaves out;
    ``fields["first_done"]`` is (time, completed) when the first unit after it was done (:meth:`LiveProgress.update`).
    """
    work = task.fields.get("work")
    if work is not None and 0 < work < 1 and task.elapsed is not None:
        return task.elapsed * (1 - work) / work
    done = task.completed - task.fields.get("done_before", 0)
    if task.total is None or task.elapsed is None or done <= 0:
        return None
    left = max(0.0, task.total - task.completed)
    first = task.fields.get("first_done")
    if first is not None and task.completed > first[1]:
        return (task.get_time() - first[0]) / (task.completed - first[1]) * left
    if task.fields.get("concurrent"):
        return None
    return task.elapsed / done * left


class _TimesColumn(ProgressColumn):
    """``0:01:02 · ETA 0:03:00``: elapsed and left (``ETA ?`` until the first unit is done); never wrapped."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))

    def render(self, task: Task) -> Text:
        left = time_left(task)
        started = task.completed > task.fields.get("done_before", 0) or task.fields.get("work", 0) > 0
        eta = "estimating…" if left is None and started and not task.finished else clock(left)
        return Text(f"{clock(task.elapsed)} · ETA {eta}", style="progress.remaining")


@dataclass(frozen=True)
class JobLine:
    """Where the main job stands, for the display of the stage it runs: stage ``index`` of ``total``, when the job
    and this stage started (epoch seconds), and the job's estimates of this stage and of the stages after it
    (None where nothing comparable was timed yet)."""

    index: int
    total: int
    name: str
    started: float
    stage_started: float
    this_s: float | None
    later_s: float | None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> JobLine | None:
        raw = os.environ.get(JOB_ENV)
        if not raw:
            return None
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):  # a foreign or damaged value: no job line rather than a crash
            return None

    def left(self, stage_left: float | None, now: float) -> float | None:
        """Seconds left for the whole job: this stage's (its display's estimate, else the job's) plus the later
        stages'."""
        if stage_left is None and self.this_s is not None:
            stage_left = max(0.0, self.this_s - (now - self.stage_started))
        if stage_left is None or self.later_s is None:
            return None
        return stage_left + self.later_s

    def render(self, stage_left: float | None = None, now: float | None = None) -> Text:
        now = time.time() if now is None else now
        left = self.left(stage_left, now)
        estimate = f"about {clock(left)} left" if left is not None else "time left: estimated once a stage is timed"
        return Text(
            f"job: stage {self.index}/{self.total} {self.name} · {clock(now - self.started)} elapsed · {estimate}",
            style="bold cyan",
        )


class LiveProgress(Progress):
    """A rich ``Progress`` with tapo's columns and ETA, the job line on top, and plain lines off a terminal.

    Tasks carry two fields: ``info`` (a line under the bars, e.g. the latest metrics) and ``done_before``
    (see :func:`time_left`). The first task is the stage's main one: its estimate feeds the job line.
    """

    def __init__(
        self, enabled: bool = True, target: Console | None = None, get_time: Callable[[], float] | None = None
    ) -> None:
        target = target or console
        self.plain = enabled and not target.is_terminal
        self.job = JobLine.from_env()
        self._printed: dict[TaskID, float] = {}
        self._stopping = False
        super().__init__(
            TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=24, table_column=Column(no_wrap=True)),
            MofNCompleteColumn(table_column=Column(no_wrap=True)),
            _TimesColumn(),
            console=target,
            disable=not enabled or self.plain,
            refresh_per_second=2,
            get_time=get_time,
        )

    def add_task(  # type: ignore[override]
        self, description: str, total: float | None = None, completed: float = 0, info: str = "", **fields: object
    ) -> TaskID:
        task = super().add_task(description, total=total, completed=completed, info=info, start=True, **fields)
        self._printed[task] = time.monotonic()
        return task

    def stop(self) -> None:
        """The last frame stays on screen without the job line, which the job prints itself between stages."""
        self._stopping = True
        super().stop()

    def get_renderables(self) -> Iterable[RenderableType]:
        if self.job is not None and not self._stopping:
            main = self.tasks[0] if self.tasks else None
            yield self.job.render(time_left(main) if main is not None else None)
        yield from super().get_renderables()
        for task in self.tasks:  # below the bars, as text that wraps: the counts and times stay on one line
            if task.visible and task.fields.get("info"):
                yield Text(f"  {task.fields['info']}", style="dim")

    def update(self, task_id: TaskID, **changes: object) -> None:  # type: ignore[override]
        super().update(task_id, **changes)  # type: ignore[arg-type]
        task = self._tasks[task_id]
        if "first_done" not in task.fields and task.completed > task.fields.get("done_before", 0):
            task.fields["first_done"] = (task.get_time(), task.completed)  # where time_left's pace starts
        if self.plain:
            self._plain_line(task_id)

    def reset(self, task_id: TaskID, **changes: object) -> None:  # type: ignore[override]
        """Restart a task's clock, and its pace with it. The task's fields not in ``changes`` are kept (rich's reset
        replaces them all with the ones given, which dropped the plain line's ``info``)."""
        fields = {k: v for k, v in self._tasks[task_id].fields.items() if k != "first_done"}
        fields |= {k: v for k, v in changes.items() if k not in _RESET_ARGUMENTS}
        arguments = {k: v for k, v in changes.items() if k in _RESET_ARGUMENTS}
        super().reset(task_id, **arguments, **fields)  # type: ignore[arg-type]

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _plain_line(self, task_id: TaskID) -> None:
        task = next(t for t in self.tasks if t.id == task_id)
        if not task.visible:  # a hidden task (the RL phase row between phases) has nothing to say
            return
        now = time.monotonic()
        if not task.finished and now - self._printed.get(task_id, 0.0) < PLAIN_EVERY_S:
            return
        self._printed[task_id] = now
        total = "?" if task.total is None else f"{task.total:g}"
        line = f"{task.description} {task.completed:g}/{total} · {_TimesColumn().render(task)} {task.fields['info']}"
        self.console.print(line.rstrip(), highlight=False, markup=False, soft_wrap=True)
