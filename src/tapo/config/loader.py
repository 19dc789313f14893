"""Load a ``TapoConfig`` from YAML files and ``a.b.c=value`` overrides, failing with one clear line.

Override values are parsed as YAML scalars (``5e-6`` → float, ``true`` → bool, ``[a, b]`` → list) so
the command line speaks the same language as the files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tapo.config.schema import TapoConfig

_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


class ConfigError(ValueError):
    """A configuration problem, phrased as one line naming the key, the value and what is allowed."""


def _parse_scalar(raw: str) -> Any:
    """YAML scalar parsing, plus floats like ``5e-6`` that YAML 1.1 would leave as strings."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    if isinstance(value, str) and _SCIENTIFIC.match(value):
        return float(value)
    return value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["trainer.lr=5e-6", ...]`` into a nested dict."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, for example trainer.lr=5e-6")
        value = _parse_scalar(raw)
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} was already set to a value")
            node = child
        node[parts[-1]] = value
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if (isinstance(data, dict) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and part < len(data)
        ):
            data = data[part]
        else:
            return None
    return data


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = TapoConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def _describe(error: ValidationError, data: dict[str, Any]) -> str:
    first = error.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc) or "<root>"
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc))
        return f"unknown config key {key!r}; allowed keys here: {allowed}"
    value = _lookup(data, loc)
    shown = f"{value!r}" if value is not None or loc else "(section)"
    return f"bad config value {key}={shown}: {first['msg']}"


def build_config(data: dict[str, Any]) -> TapoConfig:
    try:
        return TapoConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, data)) from None


def load_config(paths: list[str | Path] | str | Path | None = None, overrides: list[str] | None = None) -> TapoConfig:
    """Merge YAML files left to right, then the overrides, and validate the result."""
    if paths is None:
        paths = []
    elif isinstance(paths, str | Path):
        paths = [paths]
    data: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {error}".replace("\n", " ")) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
        data = _merge(data, loaded)
    data = _merge(data, parse_overrides(overrides or []))
    return build_config(data)


def dump_config(config: TapoConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
