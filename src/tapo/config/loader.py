"""Load a ``TapoConfig`` from YAML files and ``a.b.c=value`` overrides, failing with one clear line.

Override values are parsed as YAML scalars (``5e-6`` → float, ``true`` → bool, ``[a, b]`` → list) so
the command line speaks the same language as the files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from tapo.config.bounded_yaml import MAX_FILE_BYTES, YamlBudgetError, load_bounded, shown
from tapo.config.migrate import upgrade
from tapo.config.relative_paths import resolve_file_paths
from tapo.config.schema import Section, TapoConfig, kind_shorthand, section_model, variants

_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


class ConfigError(ValueError):
    """A configuration problem, phrased as one line naming the key, the value and what is allowed."""


def _parse_scalar(raw: str, item: str) -> Any:
    """YAML scalar parsing (bounded as a file's), plus floats like ``5e-6`` that YAML 1.1 would leave as strings."""
    try:
        value = load_bounded(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    except YamlBudgetError as error:
        raise ConfigError(f"override {shown(item)}: {error}") from None
    if isinstance(value, str) and _SCIENTIFIC.match(value):
        return float(value)
    return value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["trainer.lr=5e-6", ...]`` into a nested dict.

    A backend's name and its settings combine in either order: ``rollout.engine=vllm`` with
    ``rollout.engine.gpu_memory_utilization=0.4`` gives ``{kind: vllm, gpu_memory_utilization: 0.4}``.
    """
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {shown(item)}: expected KEY=VALUE, for example trainer.lr=5e-6")
        value = _parse_scalar(raw, item)
        node: dict[str, Any] = tree
        model: type[Section] | None = TapoConfig
        *parents, last = key.split(".")
        for part in parents:
            field = _field(model, part)
            child = node.setdefault(part, {})
            if variants(field):
                child = node[part] = kind_shorthand(child)
            if not isinstance(child, dict):
                raise ConfigError(f"override {shown(item)}: {part!r} was already set to a value")
            node, model = child, section_model(field)
        if isinstance(value, str) and isinstance(node.get(last), dict) and variants(_field(model, last)):
            node[last]["kind"] = value
        else:
            node[last] = value
    return tree


def _field(model: type[Section] | None, key: str) -> FieldInfo | None:
    return model.model_fields.get(key) if model else None


def _merge(base: dict[str, Any], extra: dict[str, Any], model: type[Section] | None = TapoConfig) -> dict[str, Any]:
    """``extra`` over ``base``, section by section (an absent one counts as empty, so nested defaults apply).

    In a tagged field a name counts as ``{kind: name}``, an absent backend as the default one, and another kind
    replaces the old backend's settings instead of mixing them (``rollout.engine=vllm`` over a ``vllm-server``).
    """
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        field = _field(model, key)
        if isinstance(value, dict) and variants(field):
            old = kind_shorthand(old if old is not None else field.get_default(call_default_factory=True).kind)
            if isinstance(old, dict) and value.get("kind", old.get("kind")) != old.get("kind"):
                old = {}
        elif isinstance(value, dict) and old is None:
            old = {}
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = _merge(old, value, section_model(field))
        else:
            merged[key] = value
    return merged


def _upgrade(layer: dict[str, Any], base: dict[str, Any], model: type[Section] = TapoConfig) -> dict[str, Any]:
    """Rewrite the deprecated keys of one layer (a file, the overrides), reading the backend from earlier layers."""
    layer = upgrade(model, layer, base)
    upgraded = dict(layer)
    for key, value in layer.items():
        section = section_model(_field(model, key))
        if section and isinstance(value, dict):
            below = base.get(key)
            upgraded[key] = _upgrade(value, below if isinstance(below, dict) else {}, section)
    return upgraded


def _add_layer(data: dict[str, Any], layer: dict[str, Any], source: Path | None = None) -> dict[str, Any]:
    """``layer`` over ``data``; a layer read from the file ``source`` has its relative paths read against it."""
    try:
        upgraded = _upgrade(layer, data)
        return _merge(data, resolve_file_paths(upgraded, source) if source is not None else upgraded)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if (isinstance(data, dict) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and part < len(data)
        ):
            data = data[part]
        else:
            return None
    return data


def _resolve(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], type[Section] | None]:
    """The error location without pydantic's tag steps (``rollout.engine.vllm.x`` is ``rollout.engine.x``), and the
    section its last key belongs to (None when it is not in a section)."""
    model: type[Section] | None = TapoConfig
    path: list[Any] = []
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        path.append(part)
        if not parts:
            break
        field = _field(model, str(part))
        choices = variants(field)
        model = choices.get(parts.pop(0)) if choices else section_model(field)
    return tuple(path), model


def _describe(error: ValidationError, data: dict[str, Any]) -> str:
    first = error.errors()[0]
    raw_loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    loc, model = _resolve(raw_loc)
    key = ".".join(str(p) for p in loc) or "<root>"
    if first["type"] == "missing":
        return f"missing config key {key!r}: set it, for example {key}=..."
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields)) if model else ""
        return f"unknown config key {key!r}; allowed keys here: {allowed}"
    value = _lookup(data, loc)
    if first["type"] == "value_error" and (isinstance(value, dict) or not loc):
        # a section's own check (trainer batch sizes): its message names the keys; the section's values would
        # print a whole config section on one line
        return f"bad config{f' {key}' if loc else ''}: {first['ctx']['error']}"
    # a short prefix: the value may be a list of a million names
    echoed = shown(value) if value is not None or loc else "(section)"
    return f"bad config value {key}={echoed}: {first['msg']}"


def build_config(data: dict[str, Any]) -> TapoConfig:
    try:
        return TapoConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, data)) from None


def load_config(
    paths: list[str | Path] | str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> TapoConfig:
    """Merge YAML files left to right, then the overrides, and validate the result.

    ``base`` is a layer under the files (an environment's settings, :mod:`tapo.envs`): the schema's defaults as
    that environment wants them, which a file or an override still changes. A relative path in a file is read
    against that file's directory, one in an override against the working directory
    (:mod:`tapo.config.relative_paths` says which keys are paths)."""
    if paths is None:
        paths = []
    elif isinstance(paths, str | Path):
        paths = [paths]
    data: dict[str, Any] = _add_layer({}, base) if base else {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"config file {str(path)!r} is larger than {MAX_FILE_BYTES} bytes: not a config")
        try:
            loaded = load_bounded(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {error}".replace("\n", " ")) from None
        except YamlBudgetError as error:
            raise ConfigError(f"config file {str(path)!r} is refused: {error}") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"config file {str(path)!r} is not UTF-8 text ({error.reason})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
        data = _add_layer(data, loaded, path)
    data = _add_layer(data, parse_overrides(overrides or []))
    return build_config(data)


def dump_config(config: TapoConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
