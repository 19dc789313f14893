"""Checkpoints that a killed run resumes from: ``checkpoints/step-N/{state/, model/, trainer_state.json}``.

``state/`` is accelerate's ``save_state`` (model, optimizer, scheduler and every process's RNG states,
sharded correctly under FSDP / ZeRO-3); ``model/`` is a plain HF checkpoint for evaluation and
``resolve_model``, with the resolved config it was trained with beside the weights (``model/tapo-config.yaml``,
what ``tapo chat``/``tapo eval`` start from); ``trainer_state.json`` holds the step and the data cursor.
Everything is written into a hidden sibling directory and renamed into place at the end, so a crash mid-save
leaves either the old set of checkpoints or the new one, never a half-written ``step-N`` that resume would pick
up. A save that fails (rather than dies) removes its hidden directory, and on a full disk says so:
``No space left on device: PATH``.

A checkpoint can still be damaged afterwards (a disk fault, a copy cut short). Resuming checks every file's
header first (:func:`verify_checkpoint`, milliseconds), names the checkpoint and the file at fault, and falls
back to the previous kept checkpoint with a warning (:func:`choose_checkpoint`). The checkpoints newer than the
one resumed from are then renamed ``set-aside-step-N`` (:func:`set_aside_after`): kept for inspection, but out of
the ``step-N`` set, so neither a later resume, ``keep_checkpoints`` pruning nor ``resolve_model`` picks them.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from safetensors import SafetensorError

from tapo.io.atomic import write_json, write_text
from tapo.io.runs import TRAINED_CONFIG_FILE
from tapo.io.space import naming_disk_full
from tapo.models.integrity import CorruptFileError, check_files
from tapo.train.setup import save_policy

log = logging.getLogger(__name__)


class _TiedHeadNote(logging.Filter):
    """Drops accelerate's warning, on every ``save_state``, that it removed ``lm_head.weight`` as a shared tensor:
    SmolLM2 ties its output head to the embeddings (``tie_word_embeddings``) and the head is rebuilt from them on
    load. Any other shared tensor still warns."""

    def filter(self, record: logging.LogRecord) -> bool:
        # accelerate prefixes "[RANK n] " in its process-aware logger
        return "Removed shared tensor {'lm_head.weight'} while saving" not in record.getMessage()


logging.getLogger("accelerate.utils.other").addFilter(_TiedHeadNote())

STATE_FILE = "trainer_state.json"
SET_ASIDE_PREFIX = "set-aside-"
# What reading a damaged state raises (torch reports a bad archive as RuntimeError); anything else is a bug.
LOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, SafetensorError, pickle.UnpicklingError, zipfile.BadZipFile)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names it and, when known, the file at fault."""


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
    run_config: str | None = None,
) -> Path:
    """Write ``step-N`` atomically on every process, then keep only the newest ``keep`` checkpoints.

    ``run_config`` (the resolved config as YAML) goes beside the weights, so the model directory alone says how
    the model was trained to be prompted and which tools it calls."""
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
                if run_config is not None:
                    write_text(tmp / "model" / TRAINED_CONFIG_FILE, run_config)
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


def verify_checkpoint(checkpoint: Path) -> None:
    """Raise :class:`CheckpointError` naming ``checkpoint`` and the file when any file's header cannot be read."""
    if not (checkpoint / STATE_FILE).is_file():
        raise CheckpointError(f"checkpoint {checkpoint} is not complete (no {STATE_FILE})")
    try:
        check_files(checkpoint)
    except CorruptFileError as error:
        raise CheckpointError(
            f"checkpoint {checkpoint}: {error.path.relative_to(checkpoint)} is corrupt or truncated ({error.reason})"
        ) from None


def choose_checkpoint(checkpoints: Path, explicit: Path | None = None) -> Path | None:
    """The checkpoint to resume from: ``explicit`` when given (it must verify), else the newest that verifies.

    A corrupt newest checkpoint is skipped with a warning naming it and its file, and the previous kept one is
    used; :class:`CheckpointError` when every kept checkpoint is corrupt, None when there is none at all.
    """
    if explicit is not None:
        verify_checkpoint(explicit)
        return explicit
    found = list_checkpoints(checkpoints)
    errors = []
    for checkpoint in reversed(found):
        try:
            verify_checkpoint(checkpoint)
        except CheckpointError as error:
            errors.append(str(error))
            log.warning("%s; falling back to the previous checkpoint", error)
            continue
        return checkpoint
    if errors:
        raise CheckpointError(f"no usable checkpoint in {checkpoints}: {'; '.join(errors)}")
    return None


def set_aside_after(checkpoints: Path, step: int) -> list[Path]:
    """Rename each ``step-K`` with K > ``step`` to ``set-aside-step-K`` (a free variant of it); return the new paths.

    A run resumed from ``step`` redoes the later steps; their old checkpoints (corrupt, or from the abandoned
    continuation) must not count as newer than what the resumed run saves, nor be pruned in its place.
    """
    moved = []
    for checkpoint in list_checkpoints(checkpoints):
        if _step_of(checkpoint) > step:
            moved.append(set_aside(checkpoint, f"the run continues from step {step}"))
    return moved


def set_aside(checkpoint: Path, why: str) -> Path:
    """Rename ``checkpoint`` to ``set-aside-<name>`` (a free variant of it), kept, never deleted, and out of every
    ``step-*`` pattern; a warning says ``why``. Returns the new path."""
    target = checkpoint.parent / f"{SET_ASIDE_PREFIX}{checkpoint.name}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = checkpoint.parent / f"{SET_ASIDE_PREFIX}{checkpoint.name}.{suffix}"
    os.replace(checkpoint, target)
    log.warning("set %s aside as %s: %s", checkpoint, target.name, why)
    return target


def load_checkpoint(accelerator: Accelerator, checkpoint: Path) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG states in place; return the trainer state (step, cursor).

    The files are verified first; a state that still fails to load is a :class:`CheckpointError` naming it.
    """
    verify_checkpoint(checkpoint)
    try:
        accelerator.load_state(str(checkpoint / "state"))
    except LOAD_ERRORS as error:
        raise CheckpointError(
            f"checkpoint {checkpoint}: cannot load state/ ({type(error).__name__}: {error}); "
            "resume from an older one with --resume-from step-N"
        ) from None
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
