"""Run by ``accelerate launch`` in test_train_distributed.py: one DAPO update on recorded groups.

Prints the mini-batch loss and a checksum of the updated weights as one JSON line (main process only),
so the test can compare a 1-process and a 2-process run on the same data.
"""

from __future__ import annotations

import json
import sys

import torch

from tapo.config import load_config
from tapo.io.atomic import read_jsonl
from tapo.io.runs import RunDir
from tapo.records import Trajectory
from tapo.train.setup import load_policy, make_accelerator
from tapo.train.trainer import DapoTrainer


class RecordedGroups:
    """Serves groups recorded from real sampling; ``sync`` has no engine to update."""

    def __init__(self, groups: list[list[Trajectory]]) -> None:
        self.groups = groups

    def sample(self, examples, step, round, on_done=None):
        return self.groups

    def sync(self, state_dict) -> None:
        return None

    def engine_metrics(self) -> dict[str, float]:
        return {}


def main(groups_file: str, *overrides: str) -> None:
    torch.set_num_threads(1)
    config = load_config(None, list(overrides))
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)
    model, tokenizer = load_policy(config.model)
    rows = read_jsonl(groups_file)
    n = config.trainer.group_size
    trajs = [Trajectory.from_row(r) for r in rows]
    groups = [trajs[i : i + n] for i in range(0, len(trajs), n)]
    examples = [g[0].example for g in groups]
    trainer = DapoTrainer(config, run, accelerator, model, tokenizer, RecordedGroups(groups), examples)
    stats = trainer.update(groups)
    checksum = sum(float(p.detach().double().sum()) for p in accelerator.unwrap_model(trainer.model).parameters())
    if accelerator.is_main_process:
        print(json.dumps({"loss": stats["actor/loss"], "checksum": checksum, "processes": accelerator.num_processes}))


if __name__ == "__main__":
    main(sys.argv[1], *sys.argv[2:])
