"""YAML with a budget: a config document is measured as its aliases would expand before any value is built.

``yaml.safe_load`` builds an alias as a shared reference, so a 600-byte "billion laughs" document loads in
microseconds; it is what comes next that expands it: pydantic validating a list element by element, an error
line printing the value. A config is a few hundred values, so a document is refused (one line, before any
value exists) when, counting every alias as the copy it stands for, it holds more than :data:`MAX_WEIGHT` nodes
and characters, nests deeper than :data:`MAX_DEPTH`, holds a scalar longer than :data:`MAX_SCALAR` characters, or
refers to itself. The count walks the composed node graph once, each shared node measured once.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

MAX_FILE_BYTES = 1 << 20
"""A config file larger than this (1 MiB; the shipped ones are 2 KB) is not read at all."""
MAX_SCALAR = 1 << 16
"""Characters of one value (64 KiB): a path, a name or a URL is far shorter."""
MAX_DEPTH = 32
"""Nesting of mappings and lists (the config tree is 4 deep)."""
MAX_WEIGHT = 1 << 21
"""Nodes plus scalar characters of the whole document with every alias expanded (2 M; a shipped config: 2 K)."""

_SHOWN = reprlib.Repr()  # keyword arguments need Python 3.12
_SHOWN.maxlevel, _SHOWN.maxdict, _SHOWN.maxlist, _SHOWN.maxstring, _SHOWN.maxother = 2, 4, 4, 60, 60


class YamlBudgetError(ValueError):
    """A YAML document over one of the bounds; the message says which and the bound."""


def shown(value: Any, limit: int = 80) -> str:
    """A short ``repr`` of ``value`` for an error line: at most ``limit`` characters, however large the value."""
    text = _SHOWN.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _weight(node: yaml.Node, depth: int, known: dict[int, int], open_: set[int]) -> int:
    """Nodes plus scalar characters under ``node`` with aliases expanded; ``known`` memoises shared nodes."""
    key = id(node)
    if key in known:
        return known[key]
    if key in open_:
        raise YamlBudgetError("an alias refers to the node that contains it (a recursive document)")
    if depth > MAX_DEPTH:
        raise YamlBudgetError(f"nesting deeper than {MAX_DEPTH} levels")
    if isinstance(node, yaml.ScalarNode):
        if len(node.value) > MAX_SCALAR:
            size = len(node.value)
            raise YamlBudgetError(f"a value of {size} characters (at most {MAX_SCALAR}): {shown(node.value)}")
        total = 1 + len(node.value)
    else:
        open_.add(key)
        children = [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else node.value
        total = 1
        for child in children:
            total += _weight(child, depth + 1, known, open_)
            if total > MAX_WEIGHT:
                raise YamlBudgetError(
                    f"more than {MAX_WEIGHT} nodes and characters once its aliases are expanded (an alias bomb?)"
                )
        open_.discard(key)
    known[key] = total
    return total


def load_bounded(text: str) -> Any:
    """``yaml.safe_load(text)`` after checking the bounds above; :class:`YamlBudgetError` when over one.

    Syntax errors are ``yaml.YAMLError`` as with ``safe_load``."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlBudgetError(f"{len(text)} characters (at most {MAX_FILE_BYTES})")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # the composer recurses once per level: thousands of levels end here
            raise YamlBudgetError(f"nesting deeper than {MAX_DEPTH} levels") from None
        if node is None:
            return None
        weight = _weight(node, 0, {}, set())
        if weight > MAX_WEIGHT:
            raise YamlBudgetError(f"more than {MAX_WEIGHT} nodes and characters once its aliases are expanded")
        return loader.construct_document(node)
    finally:
        loader.dispose()
