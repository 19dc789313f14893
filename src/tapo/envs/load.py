"""Finding the environment ``env.name`` names: a built-in, ``module:attribute``, or a ``tapo.envs`` entry point.

The attribute is an :class:`~tapo.envs.bundle.Environment`, or a function that returns one from ``env.args`` (as a
verifiers environment's ``load_environment(**kwargs)``). Whatever fails (the import, the arguments, the object) is
an :class:`~tapo.envs.bundle.EnvError` naming the reference, before any work.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Mapping
from typing import Any

from tapo.envs.bundle import EnvError, Environment, check

ENTRY_POINT_GROUP = "tapo.envs"
"""The entry-point group a package registers its environments in: ``[project.entry-points."tapo.envs"]``."""

BUILTIN = {"tapo-mini": "tapo.envs.builtin:tapo_mini", "tapo-published": "tapo.envs.builtin:tapo_published"}
"""TAPO's two datasets as environments, by the names ``env.name`` takes."""


def _target(reference: str) -> Any:
    """The object ``reference`` names (not yet called)."""
    path = BUILTIN.get(reference, reference)
    if ":" not in path:
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=reference)
        if not found:
            known = ", ".join(BUILTIN)
            raise EnvError(
                f"env {reference!r}: no `{ENTRY_POINT_GROUP}` entry point of that name is installed "
                f"(an import path is written module:name; built-ins: {known})"
            )
        return next(iter(found)).load()
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # importing user code can raise anything
        raise EnvError(f"env {reference!r}: importing {module_name} failed: {type(error).__name__}: {error}") from None
    if not hasattr(module, attribute):
        raise EnvError(f"env {reference!r}: {module_name} has no {attribute!r}")
    return getattr(module, attribute)


def load_environment(reference: str, args: Mapping[str, Any] | None = None) -> Environment:
    """The environment ``reference`` names, called with ``args`` when it is a function; checked (:func:`check`)."""
    args = dict(args or {})
    try:
        target = _target(reference)
    except EnvError:
        raise
    except Exception as error:  # an entry point whose module fails to import
        raise EnvError(f"env {reference!r}: loading failed: {type(error).__name__}: {error}") from None
    if isinstance(target, Environment):
        if args:
            raise EnvError(f"env {reference!r} is an Environment, not a function: it takes no env.args {list(args)}")
        env = target
    elif callable(target):
        try:
            inspect.signature(target).bind(**args)
        except TypeError as error:
            raise EnvError(f"env {reference!r}: env.args {args} do not fit {target.__name__}: {error}") from None
        except ValueError:  # a callable without a readable signature: calling it says what is wrong
            pass
        try:
            env = target(**args)
        except Exception as error:
            raise EnvError(f"env {reference!r}: building it failed: {type(error).__name__}: {error}") from None
    else:
        raise EnvError(f"env {reference!r}: not an Environment or a function returning one ({type(target).__name__})")
    if problems := check(env, reference):
        raise EnvError("\n".join(problems))
    return env
