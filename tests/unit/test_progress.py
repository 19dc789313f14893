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


def _simulated_eval(check_at: float) -> tuple[float | None, float]:
    """An evaluation of 192 questions, 64 at a time (the engine's batch), each taking 20-100 s (short ones finish
    first), with a slot refilled as soon as a question finishes; returns the ETA shown at ``check_at`` seconds and
    the true time left then."""
    from tapo.io.progress import time_left

    durations = [20 + 80 * ((i * 37) % 64) / 63 for i in range(192)]  # spread evenly over 20-100 s
    slots = [0.0] * 64
    finishes = []
    for duration in durations:  # each question takes the slot that frees first
        start = min(slots)
        slots[slots.index(start)] = start + duration
        finishes.append(start + duration)
    finishes.sort()
    now = [0.0]
    with LiveProgress(enabled=False, get_time=lambda: now[0]) as progress:
        task = progress.add_task("evaluate · questions", total=len(finishes), concurrent=True)
        for done, at in enumerate(finishes, 1):
            if at > check_at:
                break
            now[0] = at
            progress.update(task, completed=done)
        now[0] = check_at
        return time_left(progress.tasks[0]), finishes[-1] - check_at


def test_an_evaluations_eta_is_sensible_from_the_first_minute():
    """The pace from the start counts the time the first batch took to fill, while the short questions finish
    first: in this simulation it said 3.3x the time left at 30 s and 1.5x at one minute. Measured from the first
    finished question on, it is within 30 % of the truth through the first one and a half minutes (the last batch's
    drain is never foreseen: near the end any pace says too little)."""
    for check_at in (30.0, 40.0, 60.0, 90.0):
        eta, truth = _simulated_eval(check_at)
        assert eta is not None and 0.7 * truth <= eta <= 1.3 * truth, (check_at, eta, truth)


def test_a_task_that_says_its_work_share_is_paced_by_it_not_by_its_bursty_count():
    """An evaluation's questions finish in bursts at the end of its last turns; the share of its response budget used
    moves from the first turn, and the ETA follows that share while it is known and not whole."""
    from tapo.io.progress import time_left

    now = [0.0]
    with LiveProgress(enabled=False, get_time=lambda: now[0]) as progress:
        task = progress.add_task("evaluate · questions", total=300, concurrent=True)
        now[0] = 60.0
        progress.update(task, completed=0, work=0.2)
        assert time_left(progress.tasks[0]) == pytest.approx(240.0)  # a fifth of the work in a minute: 4 more
        assert "ETA 0:04:00" in str(progress.columns[-1].render(progress.tasks[0]))
        now[0] = 90.0
        progress.update(task, completed=2, work=0.3)  # two questions done: the count alone would say 2:29:00
        assert time_left(progress.tasks[0]) == pytest.approx(210.0)
        now[0] = 300.0
        progress.update(task, completed=299, work=1.0)  # the budget is whole (every question finished or capped)
        assert time_left(progress.tasks[0]) == pytest.approx(0.0, abs=1.0)  # the count takes over: one to go


def test_a_concurrent_task_says_estimating_until_two_units_are_done():
    now = [0.0]
    out = io.StringIO()
    with LiveProgress(target=Console(file=out, width=100), get_time=lambda: now[0]) as progress:
        task = progress.add_task("evaluate · questions", total=10, concurrent=True)
        steps = progress.add_task("RL steps", total=10)
        now[0] = 30.0
        progress.update(task, completed=1)
        progress.update(steps, completed=1)
        from tapo.io.progress import time_left

        assert time_left(progress.tasks[0]) is None  # one question says nothing of the batch's pace
        assert time_left(progress.tasks[1]) == pytest.approx(270.0)  # a step: the mean pace so far
        assert "ETA estimating…" in str(progress.columns[-1].render(progress.tasks[0]))
        now[0] = 40.0
        progress.update(task, completed=3)
        assert time_left(progress.tasks[0]) == pytest.approx(10.0 / 2 * 7)  # 2 questions in the 10 s since the first
        progress.reset(task, total=10, completed=0, info="phase 2")  # a new phase: its own pace
        fields = progress.tasks[0].fields
        assert "first_done" not in fields  # the clock restarts ...
        assert fields["concurrent"] is True and fields["info"] == "phase 2"  # ... the fields not given stay


def test_off_a_terminal_a_training_steps_phases_print_after_their_row_is_reset():
    """The RL phase row is reset at each new phase: its plain line must still print (rich's reset drops the fields
    it is not given, and the main job's RL stage once failed here with a KeyError)."""
    from tapo.train.step_display import StepProgress

    out = io.StringIO()
    with LiveProgress(target=Console(file=out, width=120)) as progress:
        steps = StepProgress(progress, total=1, done=0, description="RL steps", shown={"reward/mean": "reward"})
        steps.phase("rollout", 0, 4)
        steps.phase("rollout", 4, 4)
        steps.phase("update", 1, 1)
        steps.step({"reward/mean": 0.5})
    text = out.getvalue()
    assert "step 1 · rollout 4/4" in text and "step 1 · update 1/1" in text and "reward=0.5" in text
