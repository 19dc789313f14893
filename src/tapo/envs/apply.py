"""An environment applied to a run: a config layer under the user's files, and its rows written as the run's data.

The environment never reaches past the config: its parts become settings (``data.train``/``validation``/``test``
its split files, ``data.template``, ``tools.enabled``/``extra``, ``reward.custom_scorers``, ``eval.tools``, then its
own ``config``), merged *under* the user's files and overrides, so ``tapo train``, ``eval``, ``chat``, a resumed run
and an evaluation of its checkpoint all build exactly what a config without an environment builds, and a setting
given by hand still wins. The rows are written once per command (:func:`write_data`) into
``$TAPO_HOME/envs/<name>/<args>``, so the run's recorded config names the files it trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tapo.config import TapoConfig, load_config
from tapo.config.schema import EnvConfig, ToolsConfig
from tapo.data.io import save_examples
from tapo.data.schema import Example
from tapo.envs.bundle import EnvError, Environment, scorer_reference, tool_reference
from tapo.envs.load import load_environment
from tapo.paths import tapo_home
from tapo.prompts.templates import Template, family_templates, get_template, register_template
from tapo.protocol import TOOL_NAMES, Protocol
from tapo.tools.api import ToolDefinitionError
from tapo.tools.catalog import resolve_tools

FAMILIES = {"base": "", "compact": "compact", "minimal": "minimal"}
"""Template families by the name an environment gives, and the prefix of their variants' names."""
DATA_SPLITS = ("train", "validation", "test")
"""Splits with a ``data.*`` key of their own."""


def data_dir(env: Environment, args: Mapping[str, Any]) -> Path:
    """Where ``env``'s rows are written: one directory per environment and arguments."""
    key = hashlib.sha256(json.dumps(dict(args), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return tapo_home() / "envs" / env.name / (key if args else "default")


def _variant(env: Environment, family: str, tools: frozenset[str], protocol: Protocol) -> str:
    """The name of ``family``'s template offering exactly ``tools``."""
    if tools == frozenset(protocol.tool_names):
        suffix = ""
    elif len(tools) == 1:
        suffix = f"{next(iter(tools))}_only"
    elif not tools:
        suffix = "no_tools"
    else:
        raise EnvError(
            f"env {env.name!r}: template {env.template!r} has no variant offering exactly {sorted(tools)} (only all "
            f"of {list(protocol.tool_names)}, one tool, or none): give the environment a Template of its own"
        )
    return "_".join(part for part in (FAMILIES[family], suffix) if part) or "base"


def _template(env: Environment, tools: frozenset[str], protocol: Protocol) -> tuple[str, frozenset[str]]:
    """``data.template`` for ``env`` and the tools it offers; a ``Template`` of the environment is registered."""
    template = env.template
    if isinstance(template, Template):
        if template.name in family_templates(protocol):
            raise EnvError(f"env {env.name!r}: its template's name {template.name!r} is a built-in template's")
        try:
            register_template(template.name, template.text, template.tools, protocol)
        except ValueError as error:
            raise EnvError(f"env {env.name!r}: {error}") from None
        return template.name, template.tools
    if template in FAMILIES:
        return _variant(env, template, tools, protocol), tools
    try:
        return template, get_template(template, protocol).tools
    except (KeyError, ValueError, OSError) as error:
        raise EnvError(f"env {env.name!r}: {error.args[0] if error.args else error}") from None


def _eval_mode(offered: frozenset[str], protocol: Protocol) -> str | None:
    """The ``tapo eval`` tool mode whose tools the template offers, or None when no mode does."""
    if offered == frozenset(protocol.tool_names):
        return "all"
    if len(offered) == 1:
        return next(iter(offered))
    return "none" if not offered else None


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        out[key] = _merged(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


def settings(env: Environment, args: Mapping[str, Any]) -> dict[str, Any]:
    """The config layer of ``env`` (with ``args``): its data files, template, tools, rewards and own settings."""
    references = [tool_reference(tool) for tool in env.tools]
    enabled = [ref for ref in references if ref in TOOL_NAMES]
    extra = [ref for ref in references if ref not in TOOL_NAMES]
    try:
        catalog = resolve_tools(ToolsConfig(enabled=enabled, extra=extra))
    except ToolDefinitionError as error:
        raise EnvError(f"env {env.name!r}: {error}") from None
    template, offered = _template(env, frozenset(catalog.enabled), catalog.protocol)
    root = data_dir(env, args)
    data: dict[str, Any] = {split: str(root / f"{split}.jsonl") for split in env.splits if split in DATA_SPLITS}
    layer: dict[str, Any] = {
        "data": {**data, "template": template},
        "tools": {"enabled": enabled, "extra": extra},
        "reward": {"custom_scorers": {source: scorer_reference(s) for source, s in env.rewards.items()}},
    }
    if (mode := _eval_mode(offered, catalog.protocol)) is not None:
        layer["eval"] = {"tools": mode}
    return _merged(layer, env.config)


def _environment(config: EnvConfig) -> Environment:
    if config.name is None:
        raise EnvError("env.name is not set: no environment to apply")
    return load_environment(config.name, config.args)


def with_environment(config: TapoConfig, paths: list[str] | None, overrides: list[str] | None) -> TapoConfig:
    """``config`` (loaded from ``paths`` and ``overrides``) reloaded over its environment's settings; itself when it
    names none. :class:`EnvError` for the environment, ``ConfigError`` for the result, before any work."""
    if config.env.name is None:
        return config
    return load_config(paths or [], overrides or [], base=settings(_environment(config.env), config.env.args))


def configure(paths: list[str] | None = None, overrides: list[str] | None = None) -> TapoConfig:
    """The config of ``paths`` and ``overrides`` over the settings of the environment it names (if any)."""
    return with_environment(load_config(paths or [], overrides or []), paths, overrides)


def _rows(env: Environment, split: str) -> list[Example]:
    try:
        rows = list(env.dataset(split))
    except Exception as error:  # the user's builder can raise anything
        raise EnvError(f"env {env.name!r}: dataset({split!r}) failed: {type(error).__name__}: {error}") from None
    examples = []
    for number, row in enumerate(rows, 1):
        try:
            examples.append(row if isinstance(row, Example) else Example.model_validate({"split": split, **row}))
        except (ValidationError, TypeError) as error:
            first = error.errors()[0] if isinstance(error, ValidationError) else {"loc": (), "msg": str(error)}
            where = ".".join(map(str, first["loc"])) or "row"
            raise EnvError(f"env {env.name!r}: dataset({split!r}) row {number}: {where}: {first['msg']}") from None
    if not examples:
        raise EnvError(f"env {env.name!r}: dataset({split!r}) returned no rows")
    return examples


def write_data(config: TapoConfig) -> dict[str, Path]:
    """Write the rows of every split of ``config``'s environment where its settings point; the files by split."""
    env = _environment(config.env)
    root = data_dir(env, config.env.args)
    return {split: save_examples(_rows(env, split), root / f"{split}.jsonl") for split in env.splits}
