"""Two CPU processes (accelerate, gloo) give the same DAPO update as one process on the same groups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tapo.data.schema import Example
from tapo.engines.base import SamplingParams
from tapo.engines.hf import HFEngine
from tapo.io.atomic import write_jsonl
from tapo.records import RewardBreakdown, Trajectory
from tapo.train.setup import load_policy

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("train_update_worker.py")
ACCELERATE = Path(sys.executable).with_name("accelerate")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _record_groups(tiny_checkpoint: str, path: Path, prompts: int = 4, n: int = 4) -> None:
    """Real samples from the tiny model; reward = share of ids in the lower half of the vocabulary."""
    from tapo.config.schema import ModelConfig

    torch.manual_seed(0)
    model, tokenizer = load_policy(ModelConfig(name=tiny_checkpoint))
    engine = HFEngine(model.eval(), tokenizer)
    examples = [Example(id=f"q{i}", question=f"count to {i}", data_source="test", golds=["x"]) for i in range(prompts)]
    ids = [tokenizer(ex.question)["input_ids"] for ex in examples for _ in range(n)]
    gens = engine.generate(ids, SamplingParams(max_new_tokens=8, temperature=1.0, seed=0))
    rows = []
    for i, (prompt, gen) in enumerate(zip(ids, gens, strict=True)):
        out = gen.token_ids or [tokenizer.eos_token_id]
        share = sum(t < len(tokenizer) // 2 for t in out) / len(out)
        mask = [1 if j % 5 else 0 for j in range(len(out))]  # some environment tokens too
        traj = Trajectory(prompt, list(out), mask, example=examples[i // n])
        traj.reward = RewardBreakdown(True, share, 0.0, share, share > 0.5)
        rows.append(traj.to_row())
    write_jsonl(path, rows)


def _update(processes: int, groups: Path, out_dir: Path, tiny_checkpoint: str) -> dict:
    overrides = [
        f"model.name={tiny_checkpoint}",
        f"run.output_dir={out_dir}",
        f"run.name=p{processes}",
        "trainer.lr=1e-3",
        "trainer.warmup_steps=0",
        "trainer.prompts_per_step=4",
        "trainer.group_size=4",
        "trainer.mini_batch_size=8",
        "trainer.micro_batch_size=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    config = ROOT / "configs" / "accelerate" / "cpu-2proc.yaml"
    port = str(29500 + processes + os.getpid() % 1000)
    command = [str(ACCELERATE), "launch", "--config_file", str(config), "--num_processes", str(processes)]
    command += ["--main_process_port", port, str(WORKER), str(groups), *overrides]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def test_two_processes_match_one(tmp_path, tiny_checkpoint) -> None:
    groups = tmp_path / "groups.jsonl"
    _record_groups(tiny_checkpoint, groups)
    one = _update(1, groups, tmp_path, tiny_checkpoint)
    two = _update(2, groups, tmp_path, tiny_checkpoint)
    assert one["processes"] == 1 and two["processes"] == 2
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5, rel=1e-4)
    assert one["loss"] != 0.0
    assert two["checksum"] == pytest.approx(one["checksum"], rel=1e-5)
