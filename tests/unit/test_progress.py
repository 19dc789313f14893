"""The live progress of every loop (`tapo.io.progress`) and the main job's estimate (`tapo.pipeline.stages`)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tapo.io.progress import JOB_ENV, JobLine, LiveProgress, clock
from tapo.pipeline.stages import Stage, estimate


def _stage(name: str, work: float = 0.0, kind: str = "") -> Stage:
    return Stage(name, name, lambda: None, work, kind)


def test_the_estimate_prices_planned_work_at_the_pace_of_finished_stages_of_its_kind():
    stages = [_stage("data"), _stage("eval-base", 40, "eval"), _stage("sft", 240, "sft"), _stage("rl", 96, "rl"),
              _stage("eval-rl", 40, "eval"), _stage("report")]  # fmt: skip
    assert estimate(stages, {}, 1) == (None, None)  # nothing timed: no guess
    state = {
        "data": {"seconds": 5.0, "work": 0.0, "kind": ""},
        "eval-base": {"seconds": 400.0, "work": 40, "kind": "eval"},
    }
    this, later = estimate(stages, state, 2)
    # no SFT or RL stage timed yet: the mean pace of the finished ones (10 s per unit); the evaluation at 10 s/question
    assert this == pytest.approx(2400.0) and later == pytest.approx(960.0 + 400.0)
    state["sft"] = {"seconds": 120.0, "work": 240, "kind": "sft"}
    this, later = estimate(stages, state, 3)
    assert this == pytest.approx(96 * 520 / 280) and later == pytest.approx(400.0)  # eval keeps its own pace


def test_the_job_line_travels_in_the_environment_and_counts_down(monkeypatch):
    line = JobLine(3, 9, "eval-base", started=1000.0, stage_started=1100.0, this_s=300.0, later_s=1200.0)
    monkeypatch.setenv(JOB_ENV, line.to_env())
    assert JobLine.from_env() == line
    assert line.left(None, now=1200.0) == pytest.approx(200.0 + 1200.0)  # the job's estimate of this stage
    assert line.left(60.0, now=1200.0) == pytest.approx(60.0 + 1200.0)  # the stage's own, once it has one
    text = line.render(60.0, now=1200.0).plain
    assert text == "job: stage 3/9 eval-base · 0:03:20 elapsed · about 0:21:00 left"
    monkeypatch.setenv(JOB_ENV, "not json")
    assert JobLine.from_env() is None
    assert clock(None) == "?" and clock(3725.9) == "1:02:05"


def test_off_a_terminal_each_task_prints_plain_lines_instead_of_a_live_display():
    out = io.StringIO()
    with LiveProgress(target=Console(file=out, width=100)) as progress:
        task = progress.add_task("evaluate · questions", total=3)
        for done in (1, 2, 3):
            progress.update(task, completed=done)
    lines = out.getvalue().splitlines()
    # the first updates come within 30 s of the start: only the finished task is printed, once, without escapes
    assert len(lines) == 1 and lines[0].startswith("evaluate · questions 3/3 · ") and "ETA 0:00:00" in lines[0]
    assert "\x1b" not in out.getvalue()


def test_off_a_terminal_a_hidden_task_prints_nothing():
    """The RL phase row is hidden between phases: it must not print a bare "0/?" line."""
    out = io.StringIO()
    with LiveProgress(target=Console(file=out, width=100)) as progress:
        hidden = progress.add_task("", total=None, visible=False)
        progress.update(hidden, completed=0)
        progress.update(hidden, total=4, completed=4)  # finished while hidden: still nothing
    assert out.getvalue() == ""


def test_on_a_terminal_the_job_line_is_drawn_above_the_tasks_while_live(monkeypatch):
    monkeypatch.setenv(JOB_ENV, JobLine(2, 5, "sft", 0.0, 0.0, None, None).to_env())
    out = io.StringIO()
    with LiveProgress(target=Console(file=out, width=100, force_terminal=True)) as progress:
        progress.add_task("SFT steps", total=4)
        progress.refresh()
    shown = out.getvalue()
    assert "job: stage 2/5 sft" in shown and "SFT steps" in shown
    assert shown.index("job: stage") < shown.index("SFT steps")
