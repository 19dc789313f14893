"""Turn a model name from the user into something ``from_pretrained`` can load.

Accepted, in order: an existing local directory (a checkpoint, or a run directory whose latest
checkpoint is used), a short name from the store (pulled on first use), ``tiny-random`` (created on
first use), or a hub id (passed through for users with network access).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from tapo.models.architecture import KNOWN, Architecture
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


def read_architecture(name: str) -> tuple[Architecture, str]:
    """The architecture of model ``name`` and where it was read; FileNotFoundError when nothing here knows it."""
    from huggingface_hub import try_to_load_from_cache

    path = Path(name).expanduser()
    if name.startswith(("/", ".", "~")) and not path.is_dir():
        raise FileNotFoundError("no such directory")
    if path.is_dir() or "/" not in name:  # a checkpoint, a run, a store name or tiny-random
        config = Path(resolve_model(name, auto_pull=False)) / "config.json"
        return Architecture.from_config(json.loads(config.read_text(encoding="utf-8"))), str(config)
    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return Architecture.from_config(json.loads(Path(cached).read_text(encoding="utf-8"))), cached
    for known, config in KNOWN.items():
        if known.lower() == name.lower() or name.lower().startswith(f"{known.lower()}-"):  # -Instruct: same shape
            return Architecture.from_config(config), "tapo's table of the shipped configs' models"
    raise FileNotFoundError(
        f"no config.json for {name!r} here (not a local directory, not in the hub cache, not in tapo's table); "
        "download it (huggingface-cli download NAME config.json) to check a run of it"
    )
