"""The main job end to end on a tiny model: every stage runs, the summary and report exist, a rerun resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROFILE = Path(__file__).parent.parent / "fixtures" / "pipeline-smoke.yaml"
STAGES = {"data", "demos", "eval-base", "sft", "eval-sft", "tapo", "eval-tapo", "dapo-no-tools",
          "eval-dapo-no-tools", "tapo-no-mask", "eval-tapo-no-mask", "tapo-tool-cost", "eval-tapo-tool-cost",
          "report"}  # fmt: skip


def _run(out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tapo", "pipeline", "run", "--profile", str(PROFILE), "--out", str(out)]
    env = {**os.environ, "COLUMNS": "250"}  # rich wraps at the terminal width: keep stage lines whole
    return subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False, env=env)


def test_main_job_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "job"
    first = _run(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert set(json.loads((out / "pipeline-state.json").read_text())) == STAGES
    summary = json.loads((out / "summary.json").read_text())
    assert [row[0] for row in summary["tables"][0]["rows"]] == [
        "starting model", "warm start (SFT)", "TAPO (RL on the warm start)", "DAPO without tools",
        "TAPO, tool tokens left in the loss", "TAPO + tool-cost bonus (OTC)",
    ]  # fmt: skip
    assert len(summary["goals"]) == 9 and all(g["verdict"] for g in summary["goals"])
    page = (out / "report" / "report.html").read_text()
    assert "Results" in page and "RL over steps" in page and "<h2>Evaluation: eval/" not in page
    demos = [json.loads(line) for line in (out / "demos.jsonl").read_text().splitlines()]
    assert demos and all(row["reward"]["acc"] for row in demos)

    start = time.perf_counter()
    second = _run(out)
    assert second.returncode == 0
    assert (second.stdout + second.stderr).count("done earlier, skipped") == len(STAGES)
    assert time.perf_counter() - start < 60
