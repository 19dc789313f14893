"""Turn a model name from the user into something ``from_pretrained`` can load.

Accepted, in order: an existing local directory (a checkpoint, or a run directory whose newest intact
checkpoint is used), a short name from the store (pulled on first use), ``tiny-random`` (created on
first use), or a hub id (passed through for users with network access).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tapo.models.architecture import KNOWN, Architecture
from tapo.models.loadable import ModelDirError, check_loadable
from tapo.models.store import EMBEDDED_MODELS, ensure_stored
from tapo.paths import models_dir

log = logging.getLogger(__name__)

# A tiny random Llama with the SmolLM2 tokenizer, written under $TAPO_HOME/models on first use (fast CPU runs).
TINY_RANDOM = "tiny-random"
# Checkpoints already reported as skipped: a command resolves its model more than once (config, checks, load)
_warned: set[Path] = set()


def _run_models(run_dir: Path) -> list[Path]:
    """Every ``checkpoints/step-N/model`` of a run directory, newest first."""
    steps = [p for p in (run_dir / "checkpoints").glob("step-*") if p.name[5:].isdigit() and (p / "model").is_dir()]
    return [p / "model" for p in sorted(steps, key=lambda p: int(p.name[5:]), reverse=True)]


def latest_run_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``checkpoints/step-N/model`` of a run directory, if any."""
    models = _run_models(run_dir)
    return models[0] if models else None


def intact_run_checkpoint(run_dir: Path) -> Path:
    """The newest ``checkpoints/step-N/model`` of a run that loads (:func:`check_loadable`), as resume picks its
    checkpoint: a damaged newer one is skipped with a warning naming it. FileNotFoundError says what is missing."""
    models = _run_models(run_dir)
    problems = []
    for model in models:
        try:
            check_loadable(model)
        except ModelDirError as error:
            problems.append(str(error))
            if model not in _warned:
                _warned.add(model)
                log.warning("%s; falling back to the previous checkpoint", error)
            continue
        return model
    if problems:
        raise FileNotFoundError(f"run {run_dir} has no intact checkpoint: {problems[-1]}")
    if (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(
            f"run {run_dir} has no complete checkpoint yet (checkpoints/step-N/model): resume or finish its "
            "training first, or give another model"
        )
    raise FileNotFoundError(
        f"{run_dir} is neither a model checkpoint (no config.json) nor a run directory (no checkpoints/)"
    )


def resolve_model(name: str, auto_pull: bool = True) -> str:
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        return str(intact_run_checkpoint(path))
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
