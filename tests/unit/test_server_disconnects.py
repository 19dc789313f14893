"""Issue 28: the search and code servers over loopback: a client that hangs up mid-body is one log line (no
traceback), and the search server refuses what its JSON parser cannot take with 400, as the code server does."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tapo.config.schema import SandboxCodeConfig
from tapo.io.loopback import serve_in_thread
from tapo.tools.code.server import create_app as code_app
from tapo.tools.search.bm25 import BM25Index
from tapo.tools.search.server import create_app as search_app

pytestmark = pytest.mark.timeout(60)
ROWS = [{"id": "p1", "title": "Eiffel Tower", "text": "The Eiffel Tower in Paris was completed in 1889."}]


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, str]]:
    index = BM25Index.build(ROWS, tmp_path_factory.mktemp("srv") / "index")
    with serve_in_thread(search_app(index)) as search, serve_in_thread(code_app(SandboxCodeConfig())) as code:
        yield {"/retrieve": search, "/run": code}


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("route", ["/retrieve", "/run"])
def test_a_client_that_hangs_up_mid_body_is_one_log_line(servers, route):
    url = urlsplit(servers[route])
    seen = Records()
    for name in ("", "uvicorn", "uvicorn.error"):  # uvicorn's loggers do not propagate to the root
        logging.getLogger(name).addHandler(seen)
    try:
        with socket.create_connection((url.hostname, url.port)) as sock:
            head = f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            sock.sendall(head.encode() + b'{"queries": ["eiff')
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while not any("disconnected" in r.getMessage() for r in seen.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{servers[route]}/health").status_code == 200
    finally:
        for name in ("", "uvicorn", "uvicorn.error"):
            logging.getLogger(name).removeHandler(seen)
    lines = [r for r in seen.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "disconnected" in lines[0].getMessage(), [r.getMessage() for r in lines]
    assert lines[0].exc_info is None and "\n" not in lines[0].getMessage()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"queries": ["x"], "n": ' + b"9" * 5000 + b"}", "digits"),
    ],
    ids=["deeply-nested", "huge-integer"],
)
def test_search_refuses_what_the_parser_cannot_take_with_400(servers, body, reason):
    reply = httpx.post(f"{servers['/retrieve']}/retrieve", content=body, headers={"content-type": "application/json"})
    error = reply.json()["error"]
    assert reply.status_code == 400 and reason in error and "\n" not in error, error
