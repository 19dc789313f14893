"""An environment: what a task is made of (questions, the prompt, the tools, the reward) in one object a user ships.

The parts are plain Python: a function from a split's name to its rows, a template's name (or a
:class:`~tapo.prompts.templates.Template`), tools as the tool API takes them (a typed function, a ``Tool`` class, an
import path, or TAPO's ``search`` and ``code``), and a scorer per data source (a ``(prediction, gold) -> float``
function, or a built-in scorer's name). A run records its environment by reference (``env.name``), not its
objects, so every function must be importable by its ``module:name``: :func:`check` says which is not, one line
each, before anything is built.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tapo.data.schema import Example
from tapo.prompts.templates import Template
from tapo.protocol import TOOL_NAMES
from tapo.rewards.scorers import PURE_SCORERS

Rows = Iterable[Example | Mapping[str, Any]]
DatasetFn = Callable[[str], Rows]
"""A split's name (``train``, ``validation``, ``test``) -> its rows: ``Example`` s or mappings of their fields."""
ToolRef = str | Callable[..., Any] | type
ScorerRef = str | Callable[[str, str], float]

BUILTIN_SCORERS = frozenset({*PURE_SCORERS, "math"})
"""Scorer names the reward registry knows without an import."""


class EnvError(ValueError):
    """An environment that cannot be used; the message has one line per problem, each naming the part."""


@dataclass(frozen=True)
class Environment:
    """A task as one object: ``dataset(split)`` gives the rows of each of ``splits``; ``template`` is a family
    (``base``, ``compact``, ``minimal``: its variant offering exactly ``tools``), another template's name, or a
    ``Template``; ``tools`` are what the policy may call; ``rewards`` maps a data source to its scorer; ``config``
    is a config layer (as a YAML file holds it) of any other setting the environment needs, under the user's."""

    name: str
    dataset: DatasetFn
    template: str | Template = "compact"
    tools: tuple[ToolRef, ...] = ()
    rewards: Mapping[str, ScorerRef] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    splits: tuple[str, ...] = ("train", "validation", "test")


def import_path(obj: Any) -> str:
    """``module:qualname`` of a module-level function or class; ValueError when that path does not lead back to it
    (a lambda, a nested function, something defined in ``__main__``)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise ValueError("it is not importable by a path: define it at module level in an importable module")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        found = None
    if found is not obj:
        raise ValueError(f"{module}:{qualname} does not lead back to it: define it at module level")
    return f"{module}:{qualname}"


def tool_reference(tool: ToolRef) -> str:
    """What ``tools.enabled``/``tools.extra`` name a tool by: TAPO's name, or an import path (ValueError if none)."""
    if isinstance(tool, str):
        if tool in TOOL_NAMES or ":" in tool or tool.isidentifier():  # TAPO's, a path, or an entry point's name
            return tool
        raise ValueError("a tool named by text is TAPO's `search`/`code`, `module:name` or an entry point's name")
    if not (inspect.isfunction(tool) or inspect.isclass(tool)):
        raise ValueError(f"not a function, a Tool class or a name ({type(tool).__name__})")
    return import_path(tool)


def scorer_reference(scorer: ScorerRef) -> str:
    """What ``reward.custom_scorers`` names a scorer by: a built-in's name or an import path (ValueError if none)."""
    if isinstance(scorer, str):
        if scorer in BUILTIN_SCORERS or ":" in scorer:
            return scorer
        raise ValueError(f"unknown scorer {scorer!r}; built-in scorers: {', '.join(sorted(BUILTIN_SCORERS))}")
    if not callable(scorer):
        raise ValueError(f"not callable ({type(scorer).__name__}): a scorer is (prediction, gold) -> float in [0, 1]")
    return import_path(scorer)


def check(env: Any, origin: str) -> list[str]:
    """Every problem of ``env`` (loaded from ``origin``), one line each; empty when it can be used."""
    if not isinstance(env, Environment):
        return [f"env {origin!r}: expected a tapo.envs.Environment, got {type(env).__name__}"]
    where = f"env {origin!r}"
    problems = []
    if not env.name or not env.name.replace("-", "_").isidentifier():
        problems.append(f"{where}: name {env.name!r} is not a name (letters, digits, '_' or '-')")
    if not callable(env.dataset):
        problems.append(f"{where}: dataset is not callable ({type(env.dataset).__name__}): a function split -> rows")
    if not env.splits or ("train" not in env.splits and "test" not in env.splits):
        problems.append(f"{where}: splits {list(env.splits)} name neither 'train' nor 'test'")
    if not isinstance(env.template, str | Template):
        problems.append(f"{where}: template is a {type(env.template).__name__}, not a name or a Template")
    for number, tool in enumerate(env.tools):
        try:
            tool_reference(tool)
        except ValueError as error:
            problems.append(f"{where}: tool {number + 1} ({getattr(tool, '__name__', tool)!r}): {error}")
    for source, scorer in env.rewards.items():
        try:
            scorer_reference(scorer)
        except ValueError as error:
            problems.append(f"{where}: reward of data source {source!r}: {error}")
    if not isinstance(env.config, Mapping):
        problems.append(f"{where}: config is a {type(env.config).__name__}, not a mapping of config sections")
    return problems
