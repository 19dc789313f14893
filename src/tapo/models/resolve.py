"""Turn a model name from the user into something ``from_pretrained`` can load.

Accepted, in order: an existing local directory (a checkpoint, or a run directory whose latest
checkpoint is used), a short name from the store (pulled on first use), ``tiny-random`` (created on
first use), or a hub id (passed through for users with network access).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tapo.models.store import EMBEDDED_MODELS, ensure_stored
from tapo.paths import models_dir

# A tiny random Llama with the SmolLM2 tokenizer, written under $TAPO_HOME/models on first use (fast CPU runs).
TINY_RANDOM = "tiny-random"


def latest_run_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``checkpoints/step-N/model`` of a run directory, if any."""
    steps = sorted(
        (p for p in (run_dir / "checkpoints").glob("step-*") if (p / "model").is_dir()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    return steps[-1] / "model" if steps else None


def resolve_model(name: str, auto_pull: bool = True) -> str:
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        checkpoint = latest_run_checkpoint(path)
        if checkpoint is not None:
            return str(checkpoint)
        raise FileNotFoundError(f"{path} is neither a model checkpoint (no config.json) nor a run with checkpoints")
    if name == TINY_RANDOM:
        target = models_dir() / TINY_RANDOM
        if not (target / "config.json").is_file():
            from tapo.models.tiny import save_tiny_checkpoint  # lazy: torch and transformers load only to build it

            # written beside the target and renamed, so concurrent processes never see half a checkpoint
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{TINY_RANDOM}.", dir=target.parent))
            save_tiny_checkpoint(tmp)
            try:
                os.replace(tmp, target)
            except OSError:  # another process won the race; its checkpoint is identical (same seed)
                shutil.rmtree(tmp, ignore_errors=True)
        return str(target)
    if name in EMBEDDED_MODELS:
        return str(ensure_stored(name, auto_pull))
    return name
