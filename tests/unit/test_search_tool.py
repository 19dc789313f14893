"""``SearchTool`` and ``build_search_tool`` over real backends: guards, messages, cache hits, failures, metrics."""

from __future__ import annotations

import asyncio
import socket

import pytest
from test_search_service import ROWS  # the same three passages the server tests use

from tapo.config.schema import BM25SearchConfig, DenseSearchConfig, SearchCacheConfig, SearchConfig, SerperSearchConfig
from tapo.tools.base import Tool
from tapo.tools.search.backend import LocalBackend
from tapo.tools.search.bm25 import BM25Index
from tapo.tools.search.cache import SearchCache
from tapo.tools.search.client import RetrievalClient
from tapo.tools.search.factory import build_search_tool
from tapo.tools.search.format import NOTHING_FOUND, QUERY_NOT_MEANINGFUL, SEARCH_UNAVAILABLE, SearchHits
from tapo.tools.search.tool import SearchTool


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("tool") / "index"
    BM25Index.build(ROWS, out)
    return str(out)


class CountingBackend(LocalBackend):
    """The real BM25 backend, counting the calls that reach it."""

    calls = 0

    async def asearch(self, query: str, k: int) -> SearchHits:
        self.calls += 1
        return await super().asearch(query, k)


def test_results_are_formatted_for_the_model(index_dir: str) -> None:
    tool = SearchTool(LocalBackend(BM25Index.load(index_dir)), topk=2)
    assert isinstance(tool, Tool)
    result = asyncio.run(tool.call("  When was the Eiffel Tower completed? "))
    assert result.ok
    assert (
        result.text.splitlines()[0] == "Doc 1: (Title: Eiffel Tower) The Eiffel Tower in Paris was completed in 1889."
    )
    assert result.metadata == {"query": "When was the Eiffel Tower completed?", "source": "backend", "hits": 1}


def test_guards_and_nothing_found(index_dir: str) -> None:
    backend = CountingBackend(BM25Index.load(index_dir))
    tool = SearchTool(backend)
    for bad in ("", "ab", "<query>", "x" * 301):
        result = asyncio.run(tool.call(bad))
        assert (result.text, result.ok) == (QUERY_NOT_MEANINGFUL, False)
    assert backend.calls == 0
    assert asyncio.run(tool.call("quantum chromodynamics")).text == NOTHING_FOUND
    assert tool.metrics()["search_rejected"] == 4


def test_repeated_and_near_duplicate_queries_hit_the_cache(index_dir: str, tmp_path) -> None:
    backend = CountingBackend(BM25Index.load(index_dir))
    tool = SearchTool(backend, topk=2, cache=SearchCache(tmp_path / "cache.sqlite"))

    async def run() -> list:
        return [
            await tool.call(q)
            for q in ("highest mountain on Earth", "highest mountain on Earth", "Highest mountain on earth?")
        ]

    first, again, near = asyncio.run(run())
    assert backend.calls == 1
    assert [r.metadata["source"] for r in (first, again, near)] == ["backend", "cache_exact", "cache_fuzzy"]
    assert first.text == again.text == near.text
    metrics = tool.metrics()
    assert metrics["search_real_calls"] == 1 and metrics["search_calls"] == 3
    assert metrics["cache_exact_hits"] == 1 and metrics["cache_fuzzy_hits"] == 1 and metrics["cache_misses"] == 1


def test_service_failure_and_timeout_become_the_fixed_message(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = SearchCache(tmp_path / "cache.sqlite")
    tool = SearchTool(RetrievalClient(f"http://127.0.0.1:{port}", timeout_s=2), cache=cache)
    result = asyncio.run(tool.call("capital of France"))
    assert (result.text, result.ok) == (SEARCH_UNAVAILABLE, False)
    assert "ConnectError" in result.error
    assert len(cache) == 0  # failures are not cached

    class Slow(LocalBackend):
        async def asearch(self, query: str, k: int) -> SearchHits:
            await asyncio.sleep(5)
            raise AssertionError("not reached")

    slow = SearchTool(Slow(None), timeout_s=0.1)  # type: ignore[arg-type]
    assert asyncio.run(slow.call("capital of France")).text == SEARCH_UNAVAILABLE
    assert slow.metrics()["search_failures"] == 1


def test_a_broken_cache_degrades_to_the_backend(index_dir: str, tmp_path) -> None:
    cache = SearchCache(tmp_path / "cache.sqlite")
    cache.close()
    (tmp_path / "cache.sqlite").unlink()
    (tmp_path / "cache.sqlite").mkdir()  # the file is gone and cannot be reopened
    tool = SearchTool(LocalBackend(BM25Index.load(index_dir)), cache=cache)
    result = asyncio.run(tool.call("amazon river discharge"))
    assert result.ok and result.text.startswith("Doc 1: (Title: Amazon River)")


def test_factory_builds_a_cached_local_tool(index_dir: str, tmp_path) -> None:
    config = SearchConfig(
        backend=BM25SearchConfig(index_dir=index_dir), topk=1, cache=SearchCacheConfig(path=str(tmp_path / "c.sqlite"))
    )
    tool = build_search_tool(config)
    assert tool.name == "search"
    assert asyncio.run(tool.call("eiffel tower")).text.startswith("Doc 1: (Title: Eiffel Tower)")
    assert asyncio.run(tool.call("eiffel tower")).metadata["source"] == "cache_exact"
    asyncio.run(tool.aclose())
    no_cache = build_search_tool(
        SearchConfig(backend=BM25SearchConfig(index_dir=index_dir), cache=SearchCacheConfig(enabled=False))
    )
    assert no_cache.cache is None  # type: ignore[attr-defined]


def test_rebuilt_index_does_not_reuse_old_cache_entries(tmp_path) -> None:
    out = tmp_path / "index"
    config = SearchConfig(
        backend=BM25SearchConfig(index_dir=str(out)), cache=SearchCacheConfig(path=str(tmp_path / "c.sqlite"))
    )
    BM25Index.build(ROWS, out)
    assert "Eiffel" in asyncio.run(build_search_tool(config).call("eiffel tower")).text
    BM25Index.build([{"id": "z", "title": "Zebra", "text": "Zebras live in Africa."}], out)
    assert asyncio.run(build_search_tool(config).call("eiffel tower")).text == NOTHING_FOUND


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (SearchConfig(backend="bm25"), "tools.search.backend.index_dir"),
        (SearchConfig(backend={"kind": "serper", "api_key_env": "TAPO_TEST_NO_SUCH_KEY"}), "TAPO_TEST_NO_SUCH_KEY"),
    ],
)
def test_factory_names_the_missing_setting(config: SearchConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_search_tool(config)


def test_factory_rejects_a_kind_mismatch_and_builds_remote_and_serper(index_dir: str, monkeypatch) -> None:
    with pytest.raises(ValueError, match="holds a bm25 index"):
        build_search_tool(SearchConfig(backend=DenseSearchConfig(index_dir=index_dir)))
    remote = build_search_tool(
        SearchConfig(backend={"kind": "remote", "url": "http://127.0.0.1:9"}, cache={"enabled": False})
    )
    assert isinstance(remote.backend, RetrievalClient)  # type: ignore[attr-defined]
    assert (remote.backend.max_batch, remote.backend.batch_window_s) == (32, 0.005)  # type: ignore[attr-defined]
    monkeypatch.setenv("TAPO_TEST_KEY", "k")
    serper = build_search_tool(
        SearchConfig(backend=SerperSearchConfig(api_key_env="TAPO_TEST_KEY"), cache={"enabled": False})
    )
    assert serper.name == "search"
