"""Weight sync under FSDP 2 on 2 CPU processes (gloo): after every update, every process's engine holds exactly
the trainer's full weights, and the sampler/learner mismatch metrics read near zero.

Before weight sync gathered on every process, the transformers engine generated with the trainer's own
(sharded) module and the non-main processes' engines never received weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_task import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("train_sync_worker.py")
ACCELERATE = Path(sys.executable).with_name("accelerate")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_engine_gets_the_full_weights_after_every_step(tmp_path, tiny_checkpoint) -> None:
    overrides = [
        f"model.name={tiny_checkpoint}",
        f"run.output_dir={tmp_path}",
        "run.name=fsdp",
        *SETTINGS,
        "trainer.max_num_gen_batches=1",
        "trainer.log_trajectories=0",
    ]
    config = ROOT / "configs" / "accelerate" / "fsdp-cpu-2proc.yaml"
    port = str(29600 + os.getpid() % 1000)
    command = [str(ACCELERATE), "launch", "--config_file", str(config), "--main_process_port", port]
    command += [str(WORKER), "2", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads(path.read_text()) for path in sorted((tmp_path / "fsdp").glob("sync-report-*.json"))]
    assert sorted(r["process"] for r in reports) == [0, 1]
    assert all(r["sharded"] for r in reports), "the run did not shard: accelerate fell back to DDP"
    for step in range(2):
        rows = [r["steps"][step] for r in reports]
        assert rows[0]["trainer"] == rows[1]["trainer"] and all(row["moved"] for row in rows)
        for row in rows:
            assert row["engine"] == row["trainer"], f"step {step + 1}: an engine does not hold the new weights"
            assert row["rollout/logprob_diff_mean"] < 1e-3 and 0 <= row["rollout/mismatch_kl"] < 1e-5
            assert row["rollout/sampler_tokens"] > 0
