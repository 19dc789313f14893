"""Tool modes of an evaluation (all, one per tool, none) and the prompt template each one uses.

A mode must change both what the prompt offers and what the rollout allows, or an ablation measures a
prompt/permission mismatch instead of the value of a tool. So the template is picked per mode:

1. the configured template is one of the standard ones (``base``, ``<tool>_only``, ``no_tools``): the mode's
   standard template is used, whatever the configured one was;
2. a template named ``<configured>_<suffix>`` exists (``compact_search_only``, ``minimal_no_tools``, ...): it is
   used (every template family in ``tapo.prompts.templates`` has them, for every tool of the protocol);
3. the configured template offers exactly the mode's tools: it is used as is (``compact`` for ``all``);
4. otherwise: an error naming the template to register.

The modes are the run's protocol's (:class:`tapo.protocol.Protocol`): a user's tool is a mode of its own.
"""

from __future__ import annotations

from tapo.prompts.templates import TEMPLATES, family_templates, get_template
from tapo.protocol import TAPO, Protocol


def mode_tools(protocol: Protocol = TAPO) -> dict[str, frozenset[str]]:
    """ "all", one mode per tool of the protocol, "none" -> the tools each allows."""
    return {
        "all": frozenset(protocol.tool_names),
        **{name: frozenset({name}) for name in protocol.tool_names},
        "none": frozenset(),
    }


def tool_modes(protocol: Protocol = TAPO) -> tuple[str, ...]:
    return tuple(mode_tools(protocol))


# TAPO's modes, for readers without a run's protocol.
MODE_TOOLS: dict[str, frozenset[str]] = mode_tools(TAPO)
TOOL_MODES: tuple[str, ...] = tuple(MODE_TOOLS)


def _mode_template(mode: str) -> str:
    return {"all": "base", "none": "no_tools"}.get(mode, f"{mode}_only")


def template_for_mode(configured: str, mode: str, protocol: Protocol = TAPO) -> str:
    """The template an evaluation in tool ``mode`` renders its prompts with (rules in the module docstring)."""
    modes = mode_tools(protocol)
    if mode not in modes:
        raise ValueError(f"unknown tools mode {mode!r}; choose one of {', '.join(modes)}")
    if configured in {_mode_template(m) for m in modes}:
        return _mode_template(mode)
    variant = configured + ("" if mode == "all" else f"_{_mode_template(mode)}")
    if variant != configured and (variant in family_templates(protocol) or variant in TEMPLATES):
        return variant
    if get_template(configured, protocol).tools == modes[mode]:
        return configured
    offered = ", ".join(sorted(get_template(configured, protocol).tools)) or "no tools"
    raise ValueError(
        f"template {configured!r} offers {offered}, but tools mode {mode!r} needs a prompt offering exactly "
        f"{', '.join(sorted(modes[mode])) or 'no tools'}: register a template named {variant!r}"
    )
