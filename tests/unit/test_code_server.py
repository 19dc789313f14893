"""The code server over loopback (real uvicorn in a thread) and the remote client against it."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from typer.testing import CliRunner

from tapo.cli.main import app as tapo_cli
from tapo.config import ConfigError, load_config
from tapo.config.schema import RemoteCodeConfig, SandboxCodeConfig
from tapo.io.loopback import serve_in_thread
from tapo.tools.code.client import RemoteCodeTool
from tapo.tools.code.factory import build_code_tool
from tapo.tools.code.server import MAX_CODE_BYTES, create_app

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server_url():
    with serve_in_thread(create_app(SandboxCodeConfig(timeout_s=5))) as url:
        yield url


def test_health_and_run_shape(server_url):
    health = httpx.get(f"{server_url}/health").json()
    assert health["status"] == "ok" and health["timeout_s"] == 5 and health["layers"]["seccomp"] is True
    body = httpx.post(f"{server_url}/run", json={"code": "print(2 ** 10)"}, timeout=30).json()
    assert body["stdout"] == "1024" and body["finished"] is True and body["time"] > 0 and body["exit_code"] == 0


def test_bad_requests_get_4xx_with_a_message(server_url):
    not_json = httpx.post(f"{server_url}/run", content=b"{code: nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["detail"]
    wrong_shape = httpx.post(f"{server_url}/run", json={"source": "print(1)"})
    assert wrong_shape.status_code == 422 and "code" in wrong_shape.json()["detail"]
    too_big = httpx.post(f"{server_url}/run", json={"code": "#" * (MAX_CODE_BYTES + 1)})
    assert too_big.status_code == 413
    huge = httpx.post(f"{server_url}/run", content=b"x" * (10 * MAX_CODE_BYTES))
    assert huge.status_code == 413
    bad_utf8 = httpx.post(f"{server_url}/run", content=b'{"code": "\xff"}')
    assert bad_utf8.status_code == 400 and "JSON" in bad_utf8.json()["detail"]
    assert httpx.get(f"{server_url}/health").status_code == 200  # still serving


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # issue 20: RecursionError, HTTP 500
        (b'{"code": "print(1)", "n": ' + b"9" * 5000 + b"}", "digits"),  # over Python's int digit limit
    ],
    ids=["deeply-nested", "huge-integer"],
)
def test_a_body_the_parser_cannot_take_is_400_with_one_line(server_url, body, reason):
    response = httpx.post(f"{server_url}/run", content=body, headers={"content-type": "application/json"})
    detail = response.json()["detail"]
    assert response.status_code == 400 and reason in detail and "\n" not in detail, detail


def test_remote_tool_runs_concurrently(server_url):
    async def go():
        tool = build_code_tool(RemoteCodeConfig(url=server_url, timeout_s=5))
        assert isinstance(tool, RemoteCodeTool)
        start = time.perf_counter()
        results = await asyncio.gather(*(tool.call(f"import time; time.sleep(1); print({i})") for i in range(4)))
        await tool.aclose()
        return results, time.perf_counter() - start

    results, elapsed = asyncio.run(go())
    assert [r.text for r in results] == ["0", "1", "2", "3"] and all(r.ok for r in results)
    assert elapsed < 3.5  # four 1 s sleeps overlapped


def test_remote_tool_reports_errors_and_timeouts(server_url):
    async def go():
        tool = RemoteCodeTool(server_url, timeout_s=5)
        results = await asyncio.gather(tool.call("1/0"), tool.call("import time; time.sleep(30)"))
        await tool.aclose()
        return results

    error, slow = asyncio.run(go())
    assert not error.ok and "ZeroDivisionError" in error.text and error.error == "exit status 1"
    assert not slow.ok and slow.error == "timeout" and "timed out" in slow.text


def test_remote_tool_with_no_server_returns_text():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    tool = RemoteCodeTool(f"http://127.0.0.1:{port}", timeout_s=1)
    result = asyncio.run(tool.call("print(1)"))
    asyncio.run(tool.aclose())
    assert not result.ok and "code server is unavailable" in result.text


def test_remote_backend_needs_a_url():
    with pytest.raises(ConfigError, match=r"missing config key 'tools\.code\.url'"):
        load_config(None, ["tools.code=remote"])


def test_serve_code_refuses_a_remote_code_config():
    """`tapo serve code` serves the sandbox; a config that sends code elsewhere has no sandbox settings to serve."""
    result = CliRunner().invoke(tapo_cli, ["serve", "code", "tools.code=remote", "tools.code.url=http://127.0.0.1:9"])
    assert result.exit_code == 2 and "tools.code.kind=remote, expected sandbox" in result.output


def replying_app() -> FastAPI:
    """A code server that answers each request with the JSON it is told to (the code is the reply)."""
    app = FastAPI()

    @app.post("/run")
    async def run(request: Request) -> JSONResponse:
        return JSONResponse(json.loads((await request.json())["code"]))

    return app


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"stdout": ["x"]}, "'stdout' is [\"x\"], expected str"),
        ({"stdout": "x", "finished": "yes"}, "'finished' is \"yes\", expected bool"),
        ({"stdout": "x", "exit_code": "0"}, "'exit_code' is \"0\", expected int or null"),
        ({"stdout": "x", "exit_code": True}, "'exit_code' is true, expected int or null"),
        ({"stdout": "x", "time": "fast"}, "'time' is \"fast\", expected int or float or null"),
        ({"output": "x"}, "the reply has no 'stdout'"),
        (["x"], "the reply is a JSON list"),
    ],
)
def test_a_reply_of_the_wrong_shape_is_a_failed_call(reply, reason):
    """Issue 16 item 7: ``{"stdout": ["x"]}`` counted as a successful call printing ``['x']``."""

    async def go(url: str):
        tool = RemoteCodeTool(url, timeout_s=5)
        try:
            return await tool.call(json.dumps(reply)), await tool.call(json.dumps({"stdout": "fine", "time": 1}))
        finally:
            await tool.aclose()

    with serve_in_thread(replying_app()) as url:
        bad, good = asyncio.run(go(url))
    assert not bad.ok and reason in bad.error and reason in bad.text and "reply is malformed" in bad.text
    assert good.ok and good.text == "fine"
