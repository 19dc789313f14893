"""Keys that moved: rewrite a config layer written for an earlier release into the current tree, one warning a key.

Old run directories must still resume and old command lines still run for one release, but the schema
(``tapo.config.schema``) describes only the current tree. So the loader passes each layer (a YAML file, the
overrides) through :func:`upgrade` before merging it: an old key applies to the backend configured so far, and a
later layer still wins. Sections built in code take only the current keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from tapo.config.schema import OpenAIEndpointConfig, Raw, Section, kind_shorthand, section_model, variants

log = logging.getLogger(__name__)


def _as_dict(value: Any) -> Raw:
    value = kind_shorthand(value)
    if isinstance(value, BaseModel):
        return value.model_dump()
    return dict(value) if isinstance(value, dict) else {}


def _deprecated(old: str, new: str) -> None:
    log.warning("config key %s is deprecated (accepted until the next release): use %s", old, new)


def _drop_unknown(present: list[str], section: str, kind: str | None) -> None:
    if present:
        where = f" with {section}.kind={kind}" if kind else ""
        log.warning("dropped deprecated config keys that have no effect%s: %s", where, ", ".join(present))


def _move_keys(raw: Raw, base: Raw, owner: type[Section], section: str, field: str, moves: dict[str, str]) -> Raw:
    """Move the flat keys ``moves`` (old name -> name inside ``field``) of ``section`` into the ``field`` sub-section.

    A tagged field gets them in the backend this layer or an earlier one configures. A key that backend does not
    have, or one set to null, did nothing before: it is dropped, with a warning.
    """
    present = [key for key in moves if key in raw]
    if not present:
        return raw
    raw = dict(raw)
    info = owner.model_fields[field]
    target = _as_dict(raw.get(field, base.get(field, info.get_default(call_default_factory=True))))
    model = variants(info).get(target.get("kind")) or section_model(info)
    known = model.model_fields if model else {}
    dropped = []
    for old in present:
        value, new = raw.pop(old), moves[old]
        if value is None or new not in known:
            dropped.append(f"{section}.{old}")
            continue
        target[new] = value
        _deprecated(f"{section}.{old}", f"{section}.{field}.{new}")
    _drop_unknown(dropped, f"{section}.{field}", target.get("kind"))
    raw[field] = target
    return raw


_ROLLOUT_MOVES = {
    "batch_size": "batch_size",
    "vllm_gpu_memory_utilization": "gpu_memory_utilization",
    "vllm_server_url": "url",
    "vllm_server_weights_dir": "weights_dir",
}
_SEARCH_MOVES = {
    "index_dir": "index_dir",
    "url": "url",
    "api_key_env": "api_key_env",
    "remote_max_batch": "max_batch",
    "remote_batch_window_ms": "batch_window_ms",
}
_EVAL_MOVES = {f"openai_{key}": key for key in OpenAIEndpointConfig.model_fields}


def _data(owner: type[Section], raw: Raw, base: Raw) -> Raw:
    if "strict" not in raw:
        return raw
    log.warning(
        "config key data.strict is deprecated and has no effect (nothing ever read it): dropped; "
        "`tapo data check --strict FILE` checks a file"
    )
    return {key: value for key, value in raw.items() if key != "strict"}


def _tools(owner: type[Section], raw: Raw, base: Raw) -> Raw:
    """``tools.code: {backend: sandbox|remote, url, <sandbox limits>}`` was one flat section holding every backend's
    keys: ``backend`` becomes the tag ``kind``, and the keys the chosen backend lacks (they did nothing) are dropped."""
    code = raw.get("code")
    if not isinstance(code, dict) or "backend" not in code:
        return raw
    code = dict(code)
    kind = code.pop("backend")
    _deprecated("tools.code.backend", "tools.code.kind")
    code.setdefault("kind", kind)
    model = variants(owner.model_fields["code"]).get(code["kind"])
    if model is not None:
        unknown = [key for key in code if key not in model.model_fields]
        _drop_unknown([f"tools.code.{key}" for key in unknown], "tools.code", code["kind"])
        code = {key: value for key, value in code.items() if key not in unknown}
    return {**raw, "code": code}


def _search(owner: type[Section], raw: Raw, base: Raw) -> Raw:
    return _move_keys(raw, base, owner, "tools.search", "backend", _SEARCH_MOVES)


def _rollout(owner: type[Section], raw: Raw, base: Raw) -> Raw:
    engine = raw.get("engine")
    if _as_dict(engine).get("kind") == "hf":
        _deprecated("rollout.engine=hf", "rollout.engine=transformers")
        raw = {**raw, "engine": {**_as_dict(engine), "kind": "transformers"}}
    if raw.get("vllm_server_url") is not None:
        kind = _as_dict(raw.get("engine", base.get("engine", "transformers"))).get("kind")
        if kind == "vllm":
            _deprecated("rollout.engine=vllm with rollout.vllm_server_url", "rollout.engine.kind=vllm-server")
            raw = {**raw, "engine": {"kind": "vllm-server"}}
        elif kind != "vllm-server":
            raise ValueError(
                "rollout.vllm_server_url needs rollout.engine=vllm (now: rollout.engine.kind=vllm-server "
                "rollout.engine.url=...)"
            )
    raw = _drop_kv_cache_tokens(raw)
    return _move_keys(raw, base, owner, "rollout", "engine", _ROLLOUT_MOVES)


def _drop_kv_cache_tokens(raw: Raw) -> Raw:
    """``rollout.engine.kv_cache_tokens`` (positions) became ``kv_cache_gib`` (bytes): a position's size depends on
    the model and dtype, unknown here, so the old cap is dropped and the bound is ``kv_cache_gib`` (auto unless set).
    Every run directory written before has the key (its saved config holds the defaults): it must still resume."""
    engine = raw.get("engine")
    if not isinstance(engine, dict) or "kv_cache_tokens" not in engine:
        return raw
    engine = dict(engine)
    tokens = engine.pop("kv_cache_tokens")
    log.warning(
        "config key rollout.engine.kv_cache_tokens is replaced by rollout.engine.kv_cache_gib (GiB or auto): "
        "its %s positions are dropped; the KV store is bounded by kv_cache_gib=%s",
        tokens,
        engine.get("kv_cache_gib", "auto"),
    )
    return {**raw, "engine": engine}


def _eval(owner: type[Section], raw: Raw, base: Raw) -> Raw:
    return _move_keys(raw, base, owner, "eval", "openai", _EVAL_MOVES)


_UPGRADES: dict[str, Callable[[type[Section], Raw, Raw], Raw]] = {
    "DataConfig": _data,
    "ToolsConfig": _tools,
    "SearchConfig": _search,
    "RolloutConfig": _rollout,
    "EvalConfig": _eval,
}
"""Section class name -> the rewrite of its deprecated keys (sections not listed have none)."""


def upgrade(model: type[Section], raw: Raw, base: Raw) -> Raw:
    """``raw``, one layer's keys of section ``model``, with its deprecated keys in their new place; ``base`` is this
    section as earlier layers configured it. Nested sections are the caller's to walk (the loader does)."""
    rewrite = _UPGRADES.get(model.__name__)
    return rewrite(model, raw, base) if rewrite else raw


DEPRECATED_KEYS: dict[str, str] = {
    f"{section}.{old}": f"{section}.{field}.{new}"
    for section, field, moves in (
        ("rollout", "engine", _ROLLOUT_MOVES),
        ("tools.search", "backend", _SEARCH_MOVES),
        ("eval", "openai", _EVAL_MOVES),
    )
    for old, new in moves.items()
} | {
    "rollout.engine=hf": "rollout.engine=transformers",
    "rollout.engine=vllm with rollout.vllm_server_url": "rollout.engine.kind=vllm-server",
    "tools.code.backend": "tools.code.kind",
    "data.strict": "",
    "rollout.engine.kv_cache_tokens": "rollout.engine.kv_cache_gib",
}
"""Old key -> its new place ("" = removed), as the docs list them."""


SFT_OWN_KEYS: dict[str, str] = {
    "trainer.micro_batch_size": "sft.micro_batch_size",
    "trainer.weight_decay": "sft.weight_decay",
    "trainer.max_grad_norm": "sft.max_grad_norm",
}
"""RL keys the warm start read until it had its own -> the warm start's key. They still set RL, so a config file
keeps them without a word; on `tapo sft`'s command line (a pipeline profile's ``sft:`` list included) one would
set nothing, so it is refused."""


def sft_override_error(overrides: list[str]) -> str | None:
    """One line naming the ``sft`` key to use when an override given to `tapo sft` sets an RL key it used to read."""
    for item in overrides:
        key, _, value = item.partition("=")
        new = SFT_OWN_KEYS.get(key.strip())
        if new:
            return f"{key.strip()} sizes RL only (tapo sft no longer reads it): set {new}={value.strip()} instead"
    return None
