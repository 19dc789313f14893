"""``tapo index build`` / ``tapo index search`` through the real CLI."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.tools.search.bm25 import BM25Index
from tapo.tools.search.client import RetrievalClient

runner = CliRunner()


def write_corpus(path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_build_reports_bad_rows_by_line_and_indexes_the_rest(tmp_path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(
        corpus,
        [
            json.dumps({"id": "a", "title": "Eiffel Tower", "text": "Completed in 1889 in Paris."}),
            "{broken",
            json.dumps({"id": "b", "title": "Everest", "text": ""}),
            json.dumps({"id": "c", "title": "Amazon", "text": "The largest river by discharge."}),
        ],
    )
    result = runner.invoke(app, ["index", "build", str(corpus), "--out", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    assert "line 2" in result.output and "line 3" in result.output
    assert "2 passages" in result.output
    assert BM25Index.load(tmp_path / "idx").search("eiffel tower", 1)[0].id == "a"
    shown = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "largest river", "-k", "1"])
    assert shown.exit_code == 0 and "Amazon" in shown.output


def test_bad_invocations_exit_2_with_one_line(tmp_path) -> None:
    missing = runner.invoke(app, ["index", "build", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "i")])
    assert missing.exit_code == 2 and "not found" in missing.output
    corpus = tmp_path / "c.jsonl"
    write_corpus(corpus, ["{bad", "[]"])
    empty = runner.invoke(app, ["index", "build", str(corpus), "--out", str(tmp_path / "i")])
    assert empty.exit_code == 2 and "no passages" in empty.output
    assert not (tmp_path / "i").exists()
    kind = runner.invoke(app, ["index", "build", str(corpus), "--out", str(tmp_path / "i"), "--kind", "splade"])
    assert kind.exit_code == 2 and "--kind" in kind.output
    no_index = runner.invoke(app, ["index", "search", str(tmp_path), "query"])
    assert no_index.exit_code == 2 and "not a search index" in no_index.output


def test_serve_search_command_answers_retrieval_clients(tmp_path) -> None:
    """`tapo serve search` as a real subprocess on a free loopback port, queried by the client the tool uses."""
    BM25Index.build([{"id": "a", "title": "Eiffel Tower", "text": "Completed in 1889 in Paris."}], tmp_path / "idx")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-c",
        "from tapo.cli.main import app; app()",
        "serve",
        "search",
        "--index",
        str(tmp_path / "idx"),
    ]
    server = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        hits = asyncio.run(RetrievalClient(f"http://127.0.0.1:{port}").asearch("eiffel tower", 3))
        assert [(p.id, p.title) for p in hits.passages] == [("a", "Eiffel Tower")]
    finally:
        server.terminate()
        server.wait(10)
