"""Checkpoints that a killed run resumes from: ``checkpoints/step-N/{state/, model/, trainer_state.json}``.

``state/`` is accelerate's ``save_state`` (model, optimizer, scheduler and every process's RNG states,
sharded correctly under FSDP / ZeRO-3); ``model/`` is a plain HF checkpoint for evaluation and
``resolve_model``; ``trainer_state.json`` holds the step and the data cursor. Everything is written into
a hidden sibling directory and renamed into place at the end, so a crash mid-save leaves either the old
set of checkpoints or the new one, never a half-written ``step-N`` that resume would pick up. A save that fails
(rather than dies) removes its hidden directory, and on a full disk says so: ``No space left on device: PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from tapo.io.atomic import write_json
from tapo.io.space import naming_disk_full
from tapo.train.setup import save_policy

STATE_FILE = "trainer_state.json"


def _step_of(path: Path) -> int:
    return int(path.name.split("-", 1)[1])


def list_checkpoints(checkpoints: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    found = [p for p in checkpoints.glob("step-*") if p.name[5:].isdigit() and (p / STATE_FILE).is_file()]
    return sorted(found, key=_step_of)


def save_checkpoint(
    accelerator: Accelerator,
    checkpoints: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    keep: int,
) -> Path:
    """Write ``step-N`` atomically on every process, then keep only the newest ``keep`` checkpoints."""
    final = checkpoints / f"step-{step}"
    tmp = checkpoints / f".step-{step}.tmp"
    try:
        with naming_disk_full(final, opaque=(Exception,)):
            if accelerator.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
            accelerator.wait_for_everyone()
            accelerator.save_state(str(tmp / "state"))
            save_policy(accelerator, model, tokenizer, tmp / "model")
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                write_json(tmp / STATE_FILE, {"step": step, **trainer_state})
    except BaseException:
        if accelerator.is_main_process:  # a failed save leaves nothing behind, not a half-written .step-N.tmp
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in list_checkpoints(checkpoints)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, checkpoint: Path) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG states in place; return the trainer state (step, cursor)."""
    if not (checkpoint / STATE_FILE).is_file():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (no {STATE_FILE})")
    accelerator.load_state(str(checkpoint / "state"))
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
