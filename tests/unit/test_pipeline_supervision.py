"""The pipeline supervises its stages: a stage's process dies with the pipeline's, however the pipeline dies.

A real pipeline process runs the real stage runner; its second stage is a real ``tapo`` command that never ends
on its own (``tapo serve code``). The pipeline is killed with SIGKILL, which it cannot catch: the stage must be
gone within seconds, and a rerun must skip the finished stage and run the killed one again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal")]

PIPELINE = """
import sys
from pathlib import Path

from rich.console import Console

from tapo.pipeline.job import MainJob
from tapo.pipeline.profiles import load_profile
from tapo.pipeline.stages import Stage, StageRunner

root, port, rerun = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "rerun"
job = MainJob(load_profile("default"), root, Console())
serve = (lambda: None) if rerun else (lambda: job._tapo("serve", "code", "--port", port))
StageRunner(root / "pipeline-state.json", Console()).run(
    [Stage("first", "a quick stage", lambda: print("first ran")), Stage("serve", "a stage that runs on", serve)]
)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaper is missing


def pipeline(root: Path, port: int, mode: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PIPELINE, str(root), str(port), mode], **kwargs)


def test_killing_the_pipeline_kills_its_running_stage_and_a_rerun_resumes(tmp_path: Path) -> None:
    port = free_port()
    parent = pipeline(tmp_path, port, "first", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while True:  # the stage is up once its server answers
            assert parent.poll() is None and time.monotonic() < deadline, "the stage never started"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        stage = children(parent.pid)
        assert len(stage) == 1
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(stage[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(stage[0]), "the stage outlived the pipeline"
    finally:
        parent.kill()
        for pid in stage:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    rerun = pipeline(tmp_path, port, "rerun", stdout=subprocess.PIPE, text=True)
    out, _ = rerun.communicate(timeout=60)
    assert rerun.returncode == 0
    assert "first ran" not in out and "done earlier, skipped" in out  # the finished stage is not run again
    assert "a stage that runs on: finished" in out  # the killed one is


def _sigint_as_in_a_terminal() -> None:
    """The job's SIGINT as a terminal's foreground job has it. A command started in the background by a shell
    without job control (``cmd &`` in a script, as a CI runner may do) inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler: every Ctrl-C to the job was ignored, and the test failed in two CI runs
    started with ``nohup bash .ci/run &`` before it set SIGINT back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_says_where_the_job_stopped_and_how_to_resume(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's whole process group: the pipeline and its running stage) while the first
    stage runs: exit 130, one line naming the stage and the command that resumes the job."""
    profile = Path(__file__).parent.parent / "fixtures" / "pipeline-smoke.yaml"
    job, log = tmp_path / "job", tmp_path / "log.txt"
    command = [sys.executable, "-m", "tapo", "pipeline", "run", "--profile", str(profile), "--out", str(job)]
    env = {**os.environ, "COLUMNS": "250"}
    with log.open("w") as out:
        parent = subprocess.Popen(
            command, stdout=out, stderr=out, start_new_session=True, env=env, preexec_fn=_sigint_as_in_a_terminal
        )
    try:
        deadline = time.monotonic() + 90
        while "$ tapo data build" not in log.read_text():  # the first stage's command is about to start
            assert parent.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        while not psutil.Process(parent.pid).children():  # and its process runs: Ctrl-C reaches both
            assert parent.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        os.killpg(parent.pid, signal.SIGINT)
        parent.wait(60)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
    said = log.read_text()
    assert parent.returncode == 130, said
    assert "interrupted during [1/14] build TAPO-mini and its search index" in said
    assert f"To resume: tapo pipeline run --profile {profile} --out {job}" in said
