"""Restarts never duplicate rows, two live writers never share a run, and a corrupt checkpoint is not a dead end.

Real training on the tiny random model (no tools), through the `tapo train` command in process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.io.atomic import read_jsonl, write_jsonl, write_text
from tapo.io.runs import LOCK_FILE, RunLock, RunLocked

pytestmark = pytest.mark.usefixtures("one_thread")


def _settings(tmp_path, tiny_checkpoint) -> list[str]:
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [{"id": f"q{i}", "question": f"q{i}?", "data_source": "nq", "golds": ["x"]} for i in range(8)])
    return [
        f"data.train={train}",
        f"run.output_dir={tmp_path / 'runs'}",
        "run.name=r",
        f"model.name={tiny_checkpoint}",
        "data.template=compact_no_tools",
        "rollout.max_turns=0",
        "rollout.max_new_tokens_per_turn=4",
        "rollout.max_response_tokens=8",
        "reward.overlong.enabled=false",
        "trainer.prompts_per_step=2",
        "trainer.group_size=2",
        "trainer.mini_batch_size=4",
        "trainer.micro_batch_size=4",
        "trainer.max_num_gen_batches=1",
        "trainer.log_trajectories=2",
        "trainer.save_every=1",
        "trainer.keep_checkpoints=2",
    ]


def _train(*args: str):
    return CliRunner().invoke(app, ["train", "--no-progress", *args])


def _steps(path) -> list[int]:
    return [int(row["step"]) for row in read_jsonl(path)]


def _earlier_attempt(run) -> None:
    """What a run killed after logging step 1 and before its first checkpoint leaves behind."""
    write_jsonl(run / "metrics.jsonl", [{"step": 1.0, "stale": True}])
    write_jsonl(run / "trajectories.jsonl", [{"step": 1, "stale": True}] * 2)


def test_restarts_before_the_first_checkpoint_start_clean(tmp_path, tiny_checkpoint) -> None:
    settings = _settings(tmp_path, tiny_checkpoint)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    _earlier_attempt(run)  # a fresh run over the earlier attempt's directory
    result = _train(*settings, "trainer.max_steps=1", "trainer.save_every=100")
    assert result.exit_code == 0, result.output
    assert _steps(run / "metrics.jsonl") == [1] and _steps(run / "trajectories.jsonl") == [1, 1]
    assert not any("stale" in row for row in read_jsonl(run / "metrics.jsonl"))

    _earlier_attempt(run)  # --resume of a run with no checkpoint yet
    result = _train("--resume", str(run), "trainer.max_steps=1")
    assert result.exit_code == 0, result.output
    assert _steps(run / "metrics.jsonl") == [1] and _steps(run / "trajectories.jsonl") == [1, 1]


def _hold_lock(root) -> subprocess.Popen[str]:
    """Another process holding the run's lock, as a live `tapo train` does."""
    code = (
        "import sys, time; from tapo.io.runs import RunLock; "
        "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, tiny_checkpoint) -> None:
    run = tmp_path / "runs" / "r"
    holder = _hold_lock(run)
    try:
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
            RunLock(run).acquire()
        result = _train(*_settings(tmp_path, tiny_checkpoint), "trainer.max_steps=1")
        assert result.exit_code == 2 and f"pid {holder.pid}" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
        demos = tmp_path / "demos.jsonl"
        write_jsonl(demos, [{"prompt_ids": [1, 2], "response_ids": [3], "model_mask": [1]}])
        args = ["sft", "--demos", str(demos), f"run.output_dir={tmp_path / 'runs'}", "run.name=r"]
        result = CliRunner().invoke(app, [*args, f"model.name={tiny_checkpoint}", "--no-progress"])
        assert result.exit_code == 2 and f"pid {holder.pid}" in result.output, result.output
        assert not (run / "config.yaml").exists()  # the refused runs wrote nothing
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel drops a dead holder's lock: the run is free again
        try:
            with RunLock(run):
                break
        except RunLocked:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_the_lock_is_taken_before_the_finished_check(tmp_path, tiny_checkpoint) -> None:
    """A second `tapo sft` or fresh `tapo train` on a run another process writes is refused for that, naming its
    pid, whatever the directory holds: deciding "finished" or "not started" first let the second one, finding no
    checkpoint yet, train again (over the first's metrics and config) as soon as the first released the lock."""
    run = tmp_path / "runs" / "r"
    (run / "checkpoints" / "step-1").mkdir(parents=True)  # what the live writer has written so far
    holder = _hold_lock(run)
    try:
        result = _train(*_settings(tmp_path, tiny_checkpoint), "trainer.max_steps=1")
        assert result.exit_code == 2 and f"pid {holder.pid}" in result.output, result.output
        demos = tmp_path / "demos.jsonl"
        write_jsonl(demos, [{"prompt_ids": [1, 2], "response_ids": [3], "model_mask": [1]}])
        args = ["sft", "--demos", str(demos), f"run.output_dir={tmp_path / 'runs'}", "run.name=r"]
        result = CliRunner().invoke(app, [*args, f"model.name={tiny_checkpoint}", "--no-progress"])
        assert result.exit_code == 2 and f"pid {holder.pid}" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()


def test_a_second_pipeline_on_one_job_directory_is_refused_at_once(tmp_path) -> None:
    """Two `tapo pipeline run` on one job directory: the second stops with one line naming the first's pid,
    before it writes the job's config or runs any stage."""
    job = tmp_path / "job"
    holder = _hold_lock(job)
    try:
        result = CliRunner().invoke(app, ["pipeline", "run", "--out", str(job)])
        assert result.exit_code == 2 and f"pid {holder.pid}" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
        assert sorted(p.name for p in job.iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()


def _corrupt(path) -> None:
    write_text(path, "\x00\x01 not a safetensors header")


@pytest.mark.slow
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_checkpoint, caplog) -> None:
    settings = _settings(tmp_path, tiny_checkpoint)
    run = tmp_path / "runs" / "r"
    result = _train(*settings, "trainer.max_steps=2")
    assert result.exit_code == 0, result.output
    for part in ("model", "state"):
        _corrupt(run / "checkpoints" / "step-2" / part / "model.safetensors")

    # `tapo eval` of the run: a warning naming the corrupt file, then the newest intact checkpoint is evaluated
    data = settings[0].split("=", 1)[1]
    with caplog.at_level("WARNING"):
        result = CliRunner().invoke(app, ["eval", "--model", str(run), "--data", data, "--tools", "none", "-n", "1"])
    assert result.exit_code == 0, result.output
    assert "step-2/model/model.safetensors is corrupt" in caplog.text and "falling back" in caplog.text
    caplog.clear()

    # an explicit corrupt checkpoint: one line naming checkpoint and file, nothing touched
    result = _train("--resume", str(run), "--resume-from", "step-2")
    assert result.exit_code == 2 and "step-2: model/model.safetensors is corrupt" in result.output, result.output
    assert _steps(run / "metrics.jsonl") == [1, 2]

    # --resume: a warning naming it, then step 1; step 2 is redone and logged once; the bad one is set aside
    with caplog.at_level("WARNING"):
        result = _train("--resume", str(run))
    assert result.exit_code == 0, result.output
    assert "step-2: model/model.safetensors is corrupt" in caplog.text and "falling back" in caplog.text
    assert _steps(run / "metrics.jsonl") == [1, 2] and _steps(run / "trajectories.jsonl") == [1, 1, 2, 2]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["set-aside-step-2", "step-1", "step-2"]

    # --resume-from an older intact checkpoint: the newer ones are set aside, the rows after it dropped
    result = _train("--resume", str(run), "--resume-from", "step-1", "trainer.max_steps=1")
    assert result.exit_code == 0, result.output
    assert _steps(run / "metrics.jsonl") == [1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "set-aside-step-2",
        "set-aside-step-2.2",
        "step-1",
    ]
