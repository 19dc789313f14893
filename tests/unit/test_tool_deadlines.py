"""Every remote call and every close has a total deadline: a server that trickles its reply a byte at a time
(each byte resets httpx's per-read time-out) cannot hold a call, the closing of a client, or an evaluation.

The trickling server is real: a socket on 127.0.0.1 that promises a long JSON body and sends it one space every
``interval_s``, at most ``max_bytes`` per connection, so it is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console

from tapo.config import TapoConfig
from tapo.config.schema import RemoteSearchConfig
from tapo.data.io import save_examples
from tapo.data.schema import Example
from tapo.engines.base import SamplingParams
from tapo.engines.openai_compat import OpenAICompatEngine, OpenAIEngineError
from tapo.engines.scripted import ScriptedEngine
from tapo.eval.result_dir import load_result
from tapo.eval.runner import evaluate
from tapo.io.event_loop import EventLoopThread
from tapo.rollout.chat import ChatSession
from tapo.rollout.trace import TraceRenderer
from tapo.tools.base import ToolResult
from tapo.tools.catalog import build_tools
from tapo.tools.code.client import RemoteCodeTool
from tapo.tools.registry import ToolRegistry
from tapo.tools.search.client import RetrievalClient
from tapo.tools.search.http import SearchServiceError

pytestmark = pytest.mark.timeout(120)


def _trickle(conn: socket.socket, stop: threading.Event, interval_s: float, max_bytes: int) -> None:
    with conn:
        conn.settimeout(5)
        try:
            conn.recv(65536)  # the request (its body may follow; the reply does not wait for it)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n")
            for _ in range(max_bytes):
                if stop.wait(interval_s):
                    return
                conn.sendall(b" ")
        except OSError:  # the client gave up and hung up: what the test wants
            return


@contextmanager
def trickling_server(interval_s: float = 0.05, max_bytes: int = 1200) -> Iterator[str]:
    """A real HTTP server on loopback that answers every request a byte at a time (at most 60 s by default)."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    handlers: list[threading.Thread] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            handler = threading.Thread(target=_trickle, args=(conn, stop, interval_s, max_bytes), daemon=True)
            handler.start()
            handlers.append(handler)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()
        for handler in handlers:
            handler.join(5)


def test_a_trickled_search_reply_ends_at_the_deadline_and_closing_does_not_wait_for_it() -> None:
    with trickling_server() as url, EventLoopThread() as loop:
        client = RetrievalClient(url, timeout_s=0.5, batch_window_s=0.01)
        start = time.monotonic()
        with pytest.raises(SearchServiceError, match=r"did not answer within 0\.5 s"):
            loop.run(client.asearch("capital of France", 1))
        # a caller that gave up leaves its batch in flight: closing must not wait for the trickle to end
        with pytest.raises(TimeoutError):
            loop.run(asyncio.wait_for(client.asearch("capital of Spain", 1), 0.05))
        loop.run(client.aclose())
        assert time.monotonic() - start < 5


def test_a_trickled_code_reply_is_a_failed_call_at_the_deadline() -> None:
    with trickling_server() as url, EventLoopThread() as loop:
        tool = RemoteCodeTool(url, timeout_s=0.01)
        tool.deadline_s = 0.5  # the network slack, shortened for the test
        start = time.monotonic()
        result = loop.run(tool.call("print(1)"))
        assert not result.ok and "did not answer" in result.text
        assert time.monotonic() - start < 5
        loop.run(tool.aclose())


def test_a_trickled_reply_to_an_openai_compatible_engine_fails_at_its_deadline(tokenizer) -> None:
    with trickling_server() as url:
        engine = OpenAICompatEngine(url + "/v1", "m", tokenizer, timeout_s=0.5, max_retries=0)
        start = time.monotonic()
        with pytest.raises(OpenAIEngineError, match="no whole reply within"):
            engine.generate([[1]], SamplingParams())
        engine.close()
        assert time.monotonic() - start < 5


class HangsInClose:
    """A tool whose close never ends on its own."""

    name = "search"

    async def call(self, tool_input: str) -> ToolResult:
        return ToolResult("ok")

    async def aclose(self) -> None:
        await asyncio.Event().wait()


def test_closing_the_tools_has_a_deadline() -> None:
    with EventLoopThread() as loop:
        start = time.monotonic()
        loop.run(ToolRegistry({"search": HangsInClose()}).aclose(timeout_s=0.2))
        assert time.monotonic() - start < 5


def test_an_evaluation_against_a_trickling_search_server_finishes_and_writes_its_results(
    tokenizer, tmp_path: Path
) -> None:
    """The search call gives up at its time-out, the evaluation goes on, and closing the remote client (whose
    request the server still trickles) neither hangs nor costs the results."""
    example = Example(id="fr", question="Capital of France?", data_source="nq", golds=["Paris"])
    config = TapoConfig()
    config.rollout = config.rollout.model_copy(update={"max_turns": 2, "max_response_tokens": 256})
    config.reward.overlong.enabled = False
    config.tools.search.timeout_s = 0.5
    config.tools.search.cache.enabled = False
    script = ["<search> capital of France </search>", "<answer> Paris </answer>"]
    out = tmp_path / "eval"
    with trickling_server() as url:
        config.tools.search.backend = RemoteSearchConfig(url=url)
        start = time.monotonic()
        result = evaluate(
            config,
            "scripted",
            str(save_examples([example], tmp_path / "fr.jsonl")),
            "search",
            samples=1,
            greedy=True,
            limit=None,
            out_dir=out,
            engine=ScriptedEngine(tokenizer, script),
        )
        elapsed = time.monotonic() - start
    assert elapsed < 15, f"the evaluation took {elapsed:.0f} s"
    assert result.overall.acc == 1.0 and result.overall.tool_failure_rate == 1.0
    assert load_result(out).overall.acc == 1.0
    assert json.loads((out / "results.json").read_text())["tools_mode"] == "search"


def test_a_chat_session_against_a_trickling_search_server_answers_and_closes(tokenizer) -> None:
    """`tapo chat` closes like evaluation and training: the question is answered with 'search unavailable' at the
    time-out, and closing the session does not wait for the request the server still trickles."""
    config = TapoConfig()
    config.rollout = config.rollout.model_copy(update={"max_turns": 2, "max_response_tokens": 256})
    config.tools.search.timeout_s = 0.5
    config.tools.search.cache.enabled = False
    script = ["<search> capital of France </search>", "<answer> Paris </answer>"]
    with trickling_server() as url:
        config.tools.search.backend = RemoteSearchConfig(url=url)
        start = time.monotonic()
        with ChatSession(config, ScriptedEngine(tokenizer, script), build_tools(config.tools, {"search"})) as chat:
            renderer = TraceRenderer(Console(file=io.StringIO()), tokenizer)
            trajectory = chat.ask("Capital of France?", config.data.template, renderer, greedy=True, force=[])
        assert time.monotonic() - start < 15
    assert trajectory.turns[0].output and "Paris" in trajectory.response_text
