"""Tool modes of an evaluation (all, search, code, none) and the prompt template each one uses.

A mode must change both what the prompt offers and what the rollout allows, or an ablation measures a
prompt/permission mismatch instead of the value of a tool. So the template is picked per mode:

1. the configured template is one of the four standard ones (``base``, ``search_only``, ``code_only``,
   ``no_tools``): the mode's standard template is used, whatever the configured one was;
2. a registered template named ``<configured>_<suffix>`` exists (``compact_search_only``, ...): it is used;
3. the configured template offers exactly the mode's tools: it is used as is (``compact`` for ``all``);
4. the configured template is ``compact``: its variant for the mode is derived from the mode's standard
   template with the worked example left out (that is how ``compact`` relates to ``base``; checked at run
   time, so a change of the template texts fails loudly instead of silently changing the ablation);
5. otherwise: an error naming the template to register.
"""

from __future__ import annotations

import re
from typing import Literal

from tapo.prompts.templates import TEMPLATES, get_template, register_template

ToolMode = Literal["all", "search", "code", "none"]
TOOL_MODES: tuple[ToolMode, ...] = ("all", "search", "code", "none")
MODE_TOOLS: dict[str, frozenset[str]] = {
    "all": frozenset({"search", "code"}),
    "search": frozenset({"search"}),
    "code": frozenset({"code"}),
    "none": frozenset(),
}
MODE_TEMPLATES = {"all": "base", "search": "search_only", "code": "code_only", "none": "no_tools"}
MODE_SUFFIXES = {"all": "", "search": "_search_only", "code": "_code_only", "none": "_no_tools"}
_EXAMPLE = re.compile(r"\n\nExample:\n.*?(?=\n\nQuestion: \{question\}$)", re.DOTALL)


def _without_example(name: str) -> str:
    return _EXAMPLE.sub("", get_template(name).text, count=1)


def _compact_variant(mode: str) -> str:
    if _without_example("base") != get_template("compact").text:
        raise ValueError("the 'compact' template is no longer 'base' without its example: register compact variants")
    name = "compact" + MODE_SUFFIXES[mode]
    register_template(name, _without_example(MODE_TEMPLATES[mode]), MODE_TOOLS[mode])
    return name


def template_for_mode(configured: str, mode: str) -> str:
    """The template an evaluation in tool ``mode`` renders its prompts with (rules in the module docstring)."""
    if mode not in MODE_TOOLS:
        raise ValueError(f"unknown tools mode {mode!r}; choose one of {', '.join(TOOL_MODES)}")
    if configured in MODE_TEMPLATES.values():
        return MODE_TEMPLATES[mode]
    variant = configured + MODE_SUFFIXES[mode]
    if variant != configured and variant in TEMPLATES:
        return variant
    if get_template(configured).tools == MODE_TOOLS[mode]:
        return configured
    if configured == "compact":
        return _compact_variant(mode)
    offered = ", ".join(sorted(get_template(configured).tools)) or "no tools"
    raise ValueError(
        f"template {configured!r} offers {offered}, but tools mode {mode!r} needs a prompt offering exactly "
        f"{', '.join(sorted(MODE_TOOLS[mode])) or 'no tools'}: register a template named {variant!r}"
    )
