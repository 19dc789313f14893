"""MCP servers' tools as tapo tools, through the official ``mcp`` SDK (the ``mcp`` extra).

``tools.mcp`` names servers: a command started on stdio, or a streamable-HTTP URL. When a run resolves its tools,
each server is started once to list its tools (their names, descriptions and input schemas become tool specs;
a server that cannot start, or lists a tool the model cannot call, stops the run there with one line). During
the run each server has one connection, opened on the run's event loop at the first call and shared by its
tools; calls go through the registry (its concurrency limit and time-out). A call that fails, a server that
crashed or hangs, become text the model reads; the next call reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from tapo.config.schema import McpServerConfig, ToolsConfig
from tapo.io.event_loop import EventLoopThread
from tapo.protocol import ToolSpec
from tapo.tools.api import (
    ToolDef,
    ToolDefinitionError,
    argument_error,
    check_schema,
    in_format,
    parse_arguments,
    spec_from_schema,
)
from tapo.tools.base import ToolResult

log = logging.getLogger(__name__)


def _client(config: McpServerConfig) -> Any:
    """An unopened ``mcp.Client`` for the server (a missing SDK is one line naming the extra)."""
    try:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters
    except ImportError:
        raise ToolDefinitionError(
            f"{describe(config)}: the mcp SDK is not installed (pip install 'tapo[mcp]')"
        ) from None
    if config.url is not None:
        return Client(config.url)
    command, *args = config.command or []
    return Client(StdioServerParameters(command=command, args=args, env=config.env or None, cwd=config.cwd))


def describe(config: McpServerConfig) -> str:
    return f"MCP server {config.url or ' '.join(config.command or [])!r}"


def result_from_mcp(result: Any) -> ToolResult:
    """A ``CallToolResult`` as text: its text parts, other parts by kind, structured content as JSON."""
    parts = []
    for content in result.content or []:
        text = getattr(content, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(content, 'type', 'content')}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts)
    if result.is_error:
        return ToolResult(text or "[The tool reported an error.]", ok=False, error=f"tool error: {text[:200]}")
    return ToolResult(text)


class McpConnection:
    """One session with a server, held open by a task of its own (the SDK's transports must be entered and left in
    one task); calls from any task of the same loop share it."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self.closed = False
        self._client: Any = None
        self._ready: asyncio.Future[Any] | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def _live(self) -> bool:
        """A session is open or being opened (a caller whose time-out expired left it opening for the next)."""
        ready = self._ready
        if ready is None or ready.cancelled():
            return False
        return not ready.done() or (ready.exception() is None and self._client is not None)

    async def client(self) -> Any:
        """The open session; the first caller starts it, later ones wait for it, within ``start_timeout_s``."""
        if not self._live():
            self._ready = asyncio.get_running_loop().create_future()
            self._owner = asyncio.create_task(self._hold(self._ready))
        assert self._ready is not None
        return await asyncio.wait_for(asyncio.shield(self._ready), self.config.start_timeout_s)

    async def _hold(self, ready: asyncio.Future[Any]) -> None:
        try:
            async with _client(self.config) as client:
                self._client = client
                ready.set_result(client)
                await self._stop.wait()
        except BaseException as error:
            if not ready.done():
                ready.set_exception(error if isinstance(error, Exception) else RuntimeError(repr(error)))
            if not isinstance(error, Exception):
                raise
            log.warning("%s closed: %s", describe(self.config), error)
        finally:
            self._client = None

    async def aclose(self) -> None:
        self.closed = True
        self._stop.set()
        if self._owner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._owner, timeout=10)


class McpServer:
    """A configured server: a fresh connection after the last one closed (each registry of a run closes its tools)."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self._connection: McpConnection | None = None

    def connection(self) -> McpConnection:
        if self._connection is None or self._connection.closed:
            self._connection = McpConnection(self.config)
        return self._connection


class McpTool:
    """One tool of an MCP server, under its tapo name; the server's tools share its connection."""

    def __init__(self, name: str, remote_name: str, spec: ToolSpec, schema: Mapping[str, Any], server: McpServer):
        self.name = name
        self.remote_name = remote_name
        self.spec = spec
        self.schema = schema
        self.server = server

    async def call(self, tool_input: str) -> ToolResult:
        try:
            arguments = parse_arguments(tool_input, self.schema)
        except ValueError as error:
            return argument_error(self.name, self.spec, error)
        connection = self.server.connection()
        try:
            client = await connection.client()
            return result_from_mcp(await client.call_tool(self.remote_name, arguments))
        except Exception as error:
            log.warning("%s: %s failed: %s", describe(self.server.config), self.remote_name, error)
            await connection.aclose()  # a broken session is dropped: the next call opens a new one
            text = f"[The {self.name} tool's server failed: {type(error).__name__}: {error}]"
            return ToolResult(text, ok=False, error=f"{type(error).__name__}: {error}")

    async def connect(self) -> None:
        """Open the server's session now, so that the first call does not spend its time-out on the start-up."""
        await self.server.connection().client()

    async def aclose(self) -> None:
        await self.server.connection().aclose()


_NOT_TAG = re.compile(r"[^\w-]")


async def _list(config: McpServerConfig) -> list[Any]:
    async with _client(config) as client:
        return list((await client.list_tools()).tools)


def mcp_tool_defs(config: McpServerConfig) -> list[ToolDef]:
    """Start the server once and list its tools as tool definitions; any failure is one line naming the server."""
    what = describe(config)
    try:
        with EventLoopThread("tapo-mcp-list") as loop:
            listed = loop.run(asyncio.wait_for(_list(config), config.start_timeout_s))
    except ToolDefinitionError:
        raise
    except TimeoutError:
        raise ToolDefinitionError(f"{what}: listing its tools took over {config.start_timeout_s:g} s") from None
    except Exception as error:
        raise ToolDefinitionError(f"{what}: cannot list its tools: {type(error).__name__}: {error}") from None
    wanted = set(config.tools) if config.tools is not None else None
    missing = (wanted or set()) - {tool.name for tool in listed}
    if missing:
        raise ToolDefinitionError(f"{what}: offers no tool {sorted(missing)}")
    server = McpServer(config)
    defs = []
    for tool in listed:
        if wanted is not None and tool.name not in wanted:
            continue
        name = config.prefix + _NOT_TAG.sub("_", tool.name)
        schema = check_schema(tool.input_schema or {"type": "object"}, f"{what} tool {tool.name!r}")
        description = (tool.description or tool.title or tool.name).strip().split("\n\n")[0]
        spec = spec_from_schema(name, " ".join(description.split()), schema)
        defs.append(
            ToolDef(spec, _builder(name, tool.name, spec, schema, server), f"{what} tool {tool.name!r}", schema)
        )
    return defs


def _builder(name: str, remote: str, spec: ToolSpec, schema: Mapping[str, Any], server: McpServer):
    def build(config: ToolsConfig) -> McpTool:
        return McpTool(name, remote, in_format(spec, config), schema, server)

    return build
