"""One process of a sharded (FSDP 2 on CPU) training run: a few real DAPO steps with the transformers engine,
reporting after each step whether this process's engine holds exactly the trainer's full weights.

Run by ``accelerate launch --config_file configs/accelerate/fsdp-cpu-2proc.yaml`` from test_train_fsdp.py, with
``tests/`` on PYTHONPATH for the shared tiny task.
"""

from __future__ import annotations

import json
import sys

import torch
from accelerate.utils import DistributedType

from tapo.config import load_config
from tapo.io.runs import RunDir
from tapo.train.full_weights import fingerprint, full_state_dict
from tapo.train.run import build_rl_run
from tapo.train.setup import make_accelerator
from tiny_task import examples, lower_half


def main(steps: int, *overrides: str) -> None:
    torch.set_num_threads(1)
    config = load_config(None, list(overrides))
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)
    sharded = accelerator.distributed_type == DistributedType.FSDP
    rl = build_rl_run(config, run, accelerator, examples(), score=lower_half)
    trainer, source = rl.trainer, rl.source
    start = fingerprint(source.engine.model.state_dict())
    report = {"process": accelerator.process_index, "sharded": sharded, "steps": []}
    for _ in range(steps):
        row = trainer.train_step()
        trainer_weights = fingerprint(full_state_dict(accelerator, trainer.model))
        report["steps"].append(
            {
                "trainer": trainer_weights,
                "engine": fingerprint(source.engine.model.state_dict()),
                "moved": trainer_weights != start,
                **{k: v for k, v in row.items() if k.startswith("rollout/")},
            }
        )
    # one file per process: two processes printing at once can interleave their lines
    (run.root / f"sync-report-{accelerator.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(int(sys.argv[1]), *sys.argv[2:])
