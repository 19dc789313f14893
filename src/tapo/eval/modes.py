"""Tool modes of an evaluation (all, search, code, none) and the prompt template each one uses.

A mode must change both what the prompt offers and what the rollout allows, or an ablation measures a
prompt/permission mismatch instead of the value of a tool. So the template is picked per mode:

1. the configured template is one of the four standard ones (``base``, ``search_only``, ``code_only``,
   ``no_tools``): the mode's standard template is used, whatever the configured one was;
2. a registered template named ``<configured>_<suffix>`` exists (``compact_search_only``,
   ``minimal_no_tools``, ...): it is used (every template family in ``tapo.prompts.templates`` has them);
3. the configured template offers exactly the mode's tools: it is used as is (``compact`` for ``all``);
4. otherwise: an error naming the template to register.
"""

from __future__ import annotations

from typing import Literal

from tapo.prompts.templates import TEMPLATES, get_template

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
    offered = ", ".join(sorted(get_template(configured).tools)) or "no tools"
    raise ValueError(
        f"template {configured!r} offers {offered}, but tools mode {mode!r} needs a prompt offering exactly "
        f"{', '.join(sorted(MODE_TOOLS[mode])) or 'no tools'}: register a template named {variant!r}"
    )
