"""A run's tools, resolved once from its config: TAPO's ``search`` and ``code``, a user's (``tools.extra``) and
MCP servers' (``tools.mcp``), each a :class:`~tapo.tools.api.ToolDef`, TAPO's built the same way as a user's.

The catalog gives the run's :class:`~tapo.protocol.Protocol` (every tool's tag, rule and hint, so prompts, parsing,
stop strings and the format check know them) and builds the registry of the tools a rollout may call. Resolving
imports the user's modules and lists the MCP servers' tools, so a bad tool stops the run here, before any work,
with one line naming it (:class:`~tapo.tools.api.ToolDefinitionError`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from tapo.config.schema import ToolsConfig
from tapo.protocol import RESERVED, TAG_NAME, TAPO, Protocol
from tapo.tools.api import ToolDef, ToolDefinitionError, load_tool
from tapo.tools.base import Tool
from tapo.tools.registry import ToolRegistry


def _build_code(config: ToolsConfig) -> Tool:
    from tapo.tools.code.factory import build_code_tool  # lazy: a search-only run starts no sandbox machinery

    return build_code_tool(config.code)


def _build_search(config: ToolsConfig) -> Tool:
    from tapo.tools.search.factory import build_search_tool  # lazy: a code-only run loads no index library

    return build_search_tool(config.search)


# TAPO's two tools: their specs are the protocol's defaults (tapo.protocol.TOOLS), their builders read tools.*.
BUILTIN: tuple[ToolDef, ...] = (
    ToolDef(TAPO.spec("search"), _build_search, "tapo"),
    ToolDef(TAPO.spec("code"), _build_code, "tapo"),
)


@dataclass(frozen=True)
class ToolCatalog:
    """Every tool of a run (``defs``, in prompt order) and the names its config enables."""

    config: ToolsConfig
    defs: tuple[ToolDef, ...]

    @cached_property
    def protocol(self) -> Protocol:
        """The run's protocol in its call format (``tools.call_format``): TAPO's when it has only TAPO's tools in
        the tags format (byte for byte), else theirs and the user's."""
        protocol = Protocol(tuple(tool.spec for tool in self.defs), self.config.call_format)
        return TAPO if protocol == TAPO else protocol

    @cached_property
    def enabled(self) -> frozenset[str]:
        """``tools.enabled`` (TAPO's) and every tool of ``tools.extra`` and ``tools.mcp``."""
        return frozenset(self.config.enabled) | {tool.spec.name for tool in self.defs if tool not in BUILTIN}

    def build(self, enabled: Iterable[str] | None = None) -> ToolRegistry:
        """The registry of ``enabled`` (an ablation's tools; None: :attr:`enabled`), each started now."""
        wanted = set(self.enabled if enabled is None else enabled)
        known = {tool.spec.name: tool for tool in self.defs}
        unknown = wanted - set(known)
        if unknown:
            raise ValueError(f"unknown tools {sorted(unknown)}; known tools: {', '.join(sorted(known))}")
        tools = {name: known[name].build(self.config) for name in sorted(wanted)}
        return ToolRegistry(
            tools, max_concurrency=self.config.max_concurrency, call_timeout_s=self.config.call_timeout_s
        )


def _check_name(tool: ToolDef, taken: dict[str, str]) -> None:
    name = tool.spec.name
    if not TAG_NAME.fullmatch(name):
        raise ToolDefinitionError(f"tool {tool.origin}: name {name!r} is not a tag name (a letter, then \\w or -)")
    if name in RESERVED:
        raise ToolDefinitionError(f"tool {tool.origin}: name {name!r} is a tag of the protocol itself")
    if name in taken:
        raise ToolDefinitionError(f"tool {tool.origin}: name {name!r} is taken by {taken[name]}")
    taken[name] = tool.origin if tool.origin != "tapo" else "TAPO's built-in tool"


def resolve_tools(config: ToolsConfig) -> ToolCatalog:
    """Load every tool the config names and check that the model can call each; one line on the first that fails."""
    defs: list[ToolDef] = list(BUILTIN)
    defs += [load_tool(reference) for reference in config.extra]
    if config.mcp:
        from tapo.tools.mcp import mcp_tool_defs

        for server in config.mcp:
            defs += mcp_tool_defs(server)
    taken: dict[str, str] = {}
    for tool in defs:
        _check_name(tool, taken)
    return ToolCatalog(config, tuple(defs))


def build_tools(config: ToolsConfig, enabled: Iterable[str] | None = None) -> ToolRegistry:
    """Resolve the config's tools and build the registry of ``enabled`` (None: every enabled tool)."""
    return resolve_tools(config).build(enabled)
