"""The sqlite search cache: exact and fuzzy hits, TTL, namespaces, counters, threads and processes."""

from __future__ import annotations

import multiprocessing
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from tapo.tools.search.cache import SearchCache, normalize_query, trigrams
from tapo.tools.search.corpus import Passage
from tapo.tools.search.format import SearchHits

HITS = SearchHits(
    passages=(Passage("1", "Paris", "Capital of France.", 1.5),), panel=Passage("kg", "France", "Country")
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_exact_hit_returns_what_was_stored(tmp_path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    assert cache.get("capital of France", 3) is None
    cache.put("capital of France", 3, HITS)
    assert cache.get("capital of France", 3) == (HITS, "exact")
    assert cache.get("capital of France", 5) is None  # k is part of the key
    assert cache.metrics() | {} == {
        "cache_exact_hits": 1,
        "cache_fuzzy_hits": 0,
        "cache_misses": 2,
        "cache_puts": 1,
        "cache_hit_rate": 1 / 3,
    }


def test_near_duplicates_hit_fuzzily_and_different_queries_miss(tmp_path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    cache.put("What is the capital of France?", 3, HITS)
    assert cache.get("what is the capital of france", 3) == (HITS, "fuzzy")
    assert cache.get("What is the capital of  France ?!", 3) == (HITS, "fuzzy")
    assert cache.get("What is the capitol of France?", 3) == (HITS, "fuzzy")  # one typo
    assert cache.get("What is the capital of Spain?", 3) is None
    assert cache.get("Who painted the Mona Lisa?", 3) is None


def test_fuzzy_threshold_and_prefilter_are_honoured(tmp_path) -> None:
    strict = SearchCache(tmp_path / "c.sqlite", fuzzy_threshold=1.0)
    strict.put("What is the capital of France?", 3, HITS)
    assert strict.get("what is the capital of france", 3) == (HITS, "fuzzy")  # same normalized text
    assert strict.get("What is the capitol of France?", 3) is None
    no_candidates = SearchCache(tmp_path / "c.sqlite", fuzzy_threshold=0.0, trigram_prefilter=1.0)
    assert no_candidates.get("What is the capitol of France?", 3) is None  # prefilter drops it before rapidfuzz


def test_ttl_expires_entries_and_purge_removes_them(tmp_path) -> None:
    clock = Clock()
    cache = SearchCache(tmp_path / "c.sqlite", ttl_s=60, clock=clock)
    cache.put("capital of France", 3, HITS)
    clock.now += 59
    assert cache.get("capital of France", 3) is not None
    clock.now += 2
    assert cache.get("capital of France", 3) is None
    assert cache.get("capital of france", 3) is None  # nor fuzzily
    assert cache.purge_expired() == 1
    assert len(cache) == 0


def test_namespaces_keep_backends_apart(tmp_path) -> None:
    SearchCache(tmp_path / "c.sqlite", namespace="bm25:a").put("capital of France", 3, HITS)
    other = SearchCache(tmp_path / "c.sqlite", namespace="bm25:b")
    assert other.get("capital of France", 3) is None
    assert SearchCache(tmp_path / "c.sqlite", namespace="bm25:a").get("capital of France", 3) == (HITS, "exact")


def test_persistent_across_instances_and_empty_results_are_cached(tmp_path) -> None:
    SearchCache(tmp_path / "c.sqlite").put("zzz unknown thing", 3, SearchHits())
    assert SearchCache(tmp_path / "c.sqlite").get("zzz unknown thing", 3) == (SearchHits(), "exact")


def test_threads_share_the_cache_safely(tmp_path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                cache.put(f"thread {n} query number {i}", 3, HITS)
                assert cache.get(f"thread {n} query number {i}", 3) is not None
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) == 100


def _process_writer(cache: SearchCache, n: int) -> None:
    for i in range(20):
        cache.put(f"process {n} query {i}", 3, HITS)


def test_forked_processes_share_the_cache_safely(tmp_path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    cache.put("parent query", 3, HITS)  # the parent's connection must not be reused by the children
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_process_writer, args=(cache, n)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert len(cache) == 61
    assert cache.get("process 2 query 19", 3) == (HITS, "exact")


@given(st.text(max_size=60))
def test_normalize_is_idempotent_and_trigram_sets_are_bounded(text: str) -> None:
    norm = normalize_query(text)
    assert normalize_query(norm) == norm
    assert len(trigrams(norm)) <= len(norm) + 1


words = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=3, max_size=12)


@settings(max_examples=15, deadline=None)
@given(st.lists(words, min_size=1, max_size=6))
def test_put_then_get_roundtrips_any_query(tmp_path_factory, query_words: list[str]) -> None:
    cache = SearchCache(tmp_path_factory.mktemp("c") / "c.sqlite")
    query = " ".join(query_words)
    cache.put(query, 2, HITS)
    assert cache.get(query, 2) == (HITS, "exact")
    assert cache.get(query.upper() + "?", 2) == (HITS, "fuzzy")
