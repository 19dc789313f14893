"""Which config values are paths, and what a relative one is relative to: the file that names it.

A relative path in a config file is read against that file's directory, so ``tapo train -c ~/repo/configs/x.yaml``
finds ``../data/tapo-mini/index`` from any working directory, and a run's recorded config finds its index from
wherever ``tapo chat`` runs. Two exceptions keep what worked working: a path that exists only relative to the
working directory (as every config was written before, including the ``config.yaml`` of old runs) is read there,
and :data:`NAME_OR_PATH` values (a model, a template) change only when the file's directory holds them, since
they are usually names. Dotted command-line overrides stay relative to the working directory, as any command-line
path does. What a run records (its ``config.yaml``, each checkpoint's ``tapo-config.yaml``) has every path made
absolute (:func:`absolute_paths`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tapo.config.schema import TapoConfig

PATHS: tuple[tuple[str, ...], ...] = (
    ("run", "output_dir"),
    ("run", "accelerate_config"),
    ("data", "train"),
    ("data", "validation"),
    ("data", "test"),
    ("data", "source_dir"),
    ("tools", "search", "backend", "index_dir"),
    ("tools", "search", "cache", "path"),
    ("rollout", "engine", "weights_dir"),
    ("eval", "benchmark_dir"),
)
"""Keys whose value is a file or directory."""
NAME_OR_PATH: tuple[tuple[str, ...], ...] = (("model", "name"), ("data", "template"))
"""Keys whose value is a name (a store model, a hub id, a shipped template) or else a path."""


def _relative(value: Any) -> bool:
    """A relative local path (not ``~``, not a URL or ``hf:`` id)."""
    return (
        isinstance(value, str)
        and bool(value)
        and not Path(value).is_absolute()
        and not value.startswith(("~", "hf:"))
        and "://" not in value
    )


def _against(base: Path, value: str) -> str:
    return os.path.normpath(base.absolute() / value)


def _resolved(value: str, base: Path, name_or_path: bool) -> str:
    target = _against(base, value)
    if Path(target).exists() or (not name_or_path and not Path(value).exists()):
        return target
    return value  # a name, or a path that exists only where the command runs (configs written before this)


def _rewrite(layer: dict[str, Any], keys: tuple[str, ...], change: Callable[[str], str]) -> None:
    node: Any = layer
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict) and _relative(node.get(keys[-1])):
        node[keys[-1]] = change(node[keys[-1]])


def resolve_file_paths(layer: dict[str, Any], config_file: Path) -> dict[str, Any]:
    """One config file's values (current keys) with its relative paths read against ``config_file``'s directory."""
    base = config_file.parent
    for keys in PATHS:
        _rewrite(layer, keys, lambda value: _resolved(value, base, name_or_path=False))
    for keys in NAME_OR_PATH:
        _rewrite(layer, keys, lambda value: _resolved(value, base, name_or_path=True))
    return layer


def absolute_paths(config: TapoConfig) -> TapoConfig:
    """``config`` with each relative path made absolute against the working directory (names left alone): what a
    run records, so that it is read the same from any directory."""
    data = config.model_dump(mode="json")
    for keys in PATHS:
        _rewrite(data, keys, lambda value: _against(Path.cwd(), value))
    for keys in NAME_OR_PATH:
        _rewrite(data, keys, lambda value: _against(Path.cwd(), value) if Path(value).exists() else value)
    return TapoConfig.model_validate(data)
