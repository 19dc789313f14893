"""`tapo train` end to end on TAPO-mini with real tools (tiny random model), and a real kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tapo.data.mini.build import MiniSizes, build_mini
from tapo.io.atomic import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
TAPO = Path(sys.executable).with_name("tapo")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mini")
    build_mini(out, seed=0, sizes=MiniSizes(train=24, validation=4, test=4))
    return out


def _args(mini: Path, runs: Path, *extra: str) -> list[str]:
    return [
        str(TAPO),
        "train",
        "--config",
        str(ROOT / "configs" / "tiny-cpu.yaml"),
        "--no-progress",
        f"data.train={mini / 'train.jsonl'}",
        f"tools.search.backend.index_dir={mini / 'index'}",
        f"tools.search.cache.path={runs / 'cache.sqlite'}",
        f"run.output_dir={runs}",
        "run.torch_threads=1",
        *extra,
    ]


def test_train_runs_with_tools_and_writes_metrics(tmp_path, mini, tiny_checkpoint) -> None:
    done = subprocess.run(
        _args(mini, tmp_path, "trainer.max_steps=2", f"model.name={tiny_checkpoint}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "tiny-cpu"
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["sampling/gen_rounds"] >= 1 for r in rows)
    # the sampler (the transformers engine, in the trainer's fp32) measured against the learner at every step
    mismatch = ("logprob_diff_mean", "mismatch_kl", "is_ratio_mean", "is_ratio_max", "is_ratio_min")
    assert all(f"rollout/{key}" in r for r in rows for key in mismatch)
    assert all(r["rollout/logprob_diff_mean"] < 1e-3 and r["rollout/sampler_tokens"] > 0 for r in rows)
    assert (run / "checkpoints" / "step-2" / "model" / "config.json").is_file()
    # a second start over the same run is refused (exit 2, one line) instead of overwriting it
    again = subprocess.run(
        _args(mini, tmp_path, f"model.name={tiny_checkpoint}"), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 2 and "--resume" in again.stderr


def test_killed_run_resumes_where_it_stopped(tmp_path, mini, tiny_checkpoint) -> None:
    run = tmp_path / "tiny-cpu"
    args = _args(
        mini,
        tmp_path,
        "trainer.max_steps=6",
        "trainer.save_every=1",
        "trainer.keep_checkpoints=2",
        f"model.name={tiny_checkpoint}",
    )
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 500
    while time.monotonic() < deadline and not (run / "checkpoints" / "step-2" / "trainer_state.json").exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("step-*"))
    assert saved and saved[-1] >= 2
    resumed = subprocess.run(
        [str(TAPO), "train", "--resume", str(run), "--no-progress", "trainer.max_steps=4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # steps logged after the checkpoint were dropped and redone
    state = json.loads((run / "checkpoints" / "step-4" / "trainer_state.json").read_text())
    # a random model never answers, so every group is constant and every step uses both generation rounds:
    # 4 steps x 2 rounds x 4 prompts = 32 prompts drawn, over a 24-question train split
    assert all(r["sampling/gen_rounds"] == 2 for r in rows)
    assert state["step"] == 4 and state["cursor"] == {"epoch": 1, "position": 8}
