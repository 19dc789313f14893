"""Where tapo keeps its state: ``$TAPO_HOME`` (default ``~/.cache/tapo``) holds models, indexes and caches."""

from __future__ import annotations

import os
from pathlib import Path


def tapo_home() -> Path:
    return Path(os.environ.get("TAPO_HOME", Path.home() / ".cache" / "tapo")).expanduser()


def models_dir() -> Path:
    return tapo_home() / "models"


def cache_dir() -> Path:
    return tapo_home() / "cache"
