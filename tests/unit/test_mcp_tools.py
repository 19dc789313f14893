"""MCP servers' tools as tapo tools: a real server (tests/fixtures/mcp_server.py, the SDK's server API) started on
stdio by the test; its tools reach the protocol, run under the registry's limit and time-out, and a failing,
hanging or crashing server is text the model reads."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tapo.cli.preflight import PreflightError, check_tool_definitions
from tapo.config import load_config
from tapo.config.schema import McpServerConfig, ToolsConfig
from tapo.io.event_loop import EventLoopThread
from tapo.tools.api import ToolDefinitionError
from tapo.tools.catalog import resolve_tools

pytest.importorskip("mcp")
pytestmark = pytest.mark.timeout(180)

SERVER = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py")


def _server(**settings) -> McpServerConfig:
    return McpServerConfig(command=[sys.executable, SERVER], **settings)


def _tools(*servers: McpServerConfig, **settings) -> ToolsConfig:
    return ToolsConfig(enabled=[], mcp=list(servers or [_server()]), **settings)


@pytest.fixture(scope="module")
def catalog():
    return resolve_tools(_tools(call_timeout_s=3, max_concurrency=2))


def test_the_servers_tools_join_the_protocol(catalog):
    protocol = catalog.protocol
    assert protocol.tool_names[2:] == ("lookup_capital", "add", "fail", "hang", "crash")
    lookup = protocol.spec("lookup_capital")
    assert lookup.rule.startswith("Look up the capital city of a country. Call it with <lookup_capital> country ")
    assert '<add> {"a": integer, "b": integer} </add>' in protocol.spec("add").rule
    assert "</lookup_capital>" in protocol.stop_strings


def test_calls_answer_and_failures_are_text(catalog):
    registry = catalog.build()

    async def calls():
        try:
            await registry.tools["add"].connect()  # the start-up is not the first call's (the time-out is short)
            first = await registry.call_many(
                [("lookup_capital", "France"), ("add", '{"a": 2, "b": 40}'), ("add", "two and forty")]
            )
            failed = await registry.call("fail", "the wiki is offline")
            start = time.perf_counter()
            hung = await registry.call("hang", '{"seconds": 30}')
            waited = time.perf_counter() - start
            crashed = await registry.call("crash", '{"code": 3}')
            # a new session on a new server process, started outside the 3 s call time-out (a loaded machine)
            await registry.tools["lookup_capital"].connect()
            after = await registry.call("lookup_capital", "Japan")
            return first, failed, hung, waited, crashed, after
        finally:
            await registry.aclose()

    with EventLoopThread("test-mcp") as loop:
        (capital, added, malformed), failed, hung, waited, crashed, after = loop.run(calls())
    assert capital.ok and capital.text == "Paris" and added.ok and added.text == "42"
    assert not malformed.ok and "not JSON" in malformed.text and "<add>" in malformed.text
    assert not failed.ok and "the wiki is offline" in failed.text
    assert not hung.ok and "did not answer within 3 s" in hung.text and waited < 10
    assert not crashed.ok and "server failed" in crashed.text
    assert after.ok and after.text == "Tokyo"


def test_calls_run_concurrently_under_the_registrys_limit(catalog):
    registry = catalog.build({"lookup_capital"})

    async def calls():
        try:
            await registry.tools["lookup_capital"].connect()
            return await registry.call_many([("lookup_capital", name) for name in ("Peru", "France", "Mars") * 3])
        finally:
            await registry.aclose()

    with EventLoopThread("test-mcp") as loop:
        results = loop.run(calls())
    assert [r.text for r in results[:3]] == ["Lima", "Paris", "no capital known for 'Mars'"] and len(results) == 9


def test_a_subset_and_a_prefix():
    catalog = resolve_tools(_tools(_server(tools=["add"], prefix="calc_")))
    assert catalog.protocol.tool_names[2:] == ("calc_add",) and catalog.enabled == {"calc_add"}


@pytest.mark.parametrize(
    ("server", "says"),
    [
        ({"command": [sys.executable, "-c", "import sys; sys.exit(5)"]}, "cannot list its tools"),
        ({"command": ["/no/such/mcp-server"]}, "cannot list its tools"),
        ({"command": [sys.executable, SERVER], "tools": ["browse"]}, "offers no tool ['browse']"),
        ({"command": [sys.executable, "-c", "import time; time.sleep(60)"], "start_timeout_s": 2}, "took over 2 s"),
    ],
)
def test_a_server_that_cannot_serve_is_refused_with_one_line(server, says):
    config = load_config(None, [])
    config.tools.mcp = [McpServerConfig(**server)]
    with pytest.raises(PreflightError) as caught:
        check_tool_definitions(config)
    assert says in str(caught.value) and "MCP server" in str(caught.value) and "\n" not in str(caught.value)


def test_a_server_needs_one_transport():
    with pytest.raises(ValueError, match="exactly one of `command`"):
        McpServerConfig()
    with pytest.raises(ValueError, match="exactly one of `command`"):
        McpServerConfig(command=["x"], url="http://127.0.0.1:1/mcp")


def test_two_servers_with_one_tool_name_clash_unless_prefixed():
    with pytest.raises(ToolDefinitionError, match=r"name 'add' is taken by MCP server .* tool 'add'"):
        resolve_tools(_tools(_server(tools=["add"]), _server(tools=["add"])))
    names = resolve_tools(_tools(_server(tools=["add"]), _server(tools=["add"], prefix="b_"))).protocol.tool_names
    assert names[2:] == ("add", "b_add")


def _call_once(registry, name: str, tool_input: str):
    """One call on a run's loop, then the registry closed there."""

    async def call():
        try:
            return await registry.call(name, tool_input)
        finally:
            await registry.aclose()

    with EventLoopThread("test-mcp") as loop:
        return loop.run(call())


def test_a_server_unreachable_mid_run_is_text():
    registry = resolve_tools(_tools()).build({"add"})
    tool = registry.tools["add"]
    tool.server.config = tool.server.config.model_copy(update={"command": ["/no/such/mcp-server"]})
    result = _call_once(registry, "add", '{"a": 1, "b": 2}')
    assert not result.ok and "server failed" in result.text


@pytest.fixture
def http_server():
    """The same server on streamable HTTP, on a free loopback port; its URL once it accepts connections."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, SERVER, "--http", str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_streamable_http_server(http_server):
    catalog = resolve_tools(ToolsConfig(enabled=[], mcp=[McpServerConfig(url=http_server, tools=["add"])]))
    result = _call_once(catalog.build(), "add", '{"a": 20, "b": 22}')
    assert result.ok and result.text == "42"
