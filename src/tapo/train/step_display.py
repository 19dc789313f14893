"""The live display of a training loop (RL and SFT): steps done/total with the latest metrics, and for RL the
phase of the running step (``rollout 18/24`` trajectories, then ``update 2/4`` mini-batches)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from tapo.io.progress import LiveProgress

# Both sides of an asynchronous run (trainer.max_staleness > 0), shown after each step beside the usual metrics:
# how stale the trained samples were, how long the trainer waited for rounds and the producer for the bound.
ASYNC_SHOWN = {
    "async/staleness_mean": "lag",
    "async/trainer_wait_s": "trainer wait s",
    "async/producer_idle_s": "producer idle s",
}


class StepProgress:
    """Feeds a :class:`LiveProgress`: :meth:`step` after each step, :meth:`phase` as a step moves on."""

    def __init__(
        self, progress: LiveProgress, total: int, done: int, description: str, shown: Mapping[str, str]
    ) -> None:
        self.progress = progress
        self.shown = shown
        self.steps = progress.add_task(description, total=total, completed=done, done_before=done)
        self._phase = progress.add_task("", total=None, visible=False)
        self._phase_name = ""
        self._done = done

    def step(self, row: dict[str, float]) -> None:
        self._done += 1
        metrics = "  ".join(f"{name}={row[key]:.3g}" for key, name in self.shown.items() if key in row)
        info = f"step {self._done}: {metrics}"
        self.progress.update(self.steps, completed=self._done, info=info)
        self.progress.update(self._phase, visible=False)
        self._phase_name = ""

    def phase(self, name: str, done: int, total: int) -> None:
        """The running step is in phase ``name`` with ``done`` of ``total`` units (a new name restarts the clock)."""
        if name != self._phase_name:
            self._phase_name = name
            description = f"  step {self._done + 1} · {name}"
            concurrent = name.startswith("rollout")  # a batch of trajectories at once: see time_left
            self.progress.reset(
                self._phase, total=total, completed=done, description=description, concurrent=concurrent
            )
        self.progress.update(self._phase, completed=done, total=total, visible=True)


@contextmanager
def step_progress(
    total: int, done: int, description: str, shown: Mapping[str, str], enabled: bool = True
) -> Iterator[StepProgress]:
    """A live display of ``total`` steps of which ``done`` are already done (a resumed run), showing the metrics
    ``shown`` maps to short names."""
    with LiveProgress(enabled) as progress:
        yield StepProgress(progress, total, done, description, shown)
