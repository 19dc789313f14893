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

from tapo.prompts.templates import TEMPLATES, get_template
from tapo.protocol import TOOL_NAMES

# "all", one mode per tool of the protocol, "none"
MODE_TOOLS: dict[str, frozenset[str]] = {
    "all": frozenset(TOOL_NAMES),
    **{name: frozenset({name}) for name in TOOL_NAMES},
    "none": frozenset(),
}
TOOL_MODES: tuple[str, ...] = tuple(MODE_TOOLS)
MODE_TEMPLATES = {"all": "base", **{name: f"{name}_only" for name in TOOL_NAMES}, "none": "no_tools"}
MODE_SUFFIXES = {mode: "" if mode == "all" else f"_{template}" for mode, template in MODE_TEMPLATES.items()}


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
