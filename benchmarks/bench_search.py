"""Benchmark the BM25 search stack: index build time, query latency in memory and memory-mapped, and the search
server's throughput over loopback (raw requests and the ``SearchTool`` client with and without coalescing).

The corpus is generated once, before anything is timed (Zipf-distributed synthetic words, 40 to 120 per passage, so
the run needs no download), and the build is timed from the rows in memory to the index on disk. Queries are 3 to
6 words drawn from random passages, so every query has real hits. The server runs as a real ``tapo serve search``
subprocess, queried by concurrent httpx clients. Every figure's variants are interleaved over rounds
(benchmarks/harness.py).

    python benchmarks/bench_search.py             # full: 100,000 passages, 1,000 queries, 3 rounds
    python benchmarks/bench_search.py --quick     # ~1 minute: 10,000 passages, 200 queries
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import httpx
import numpy as np
from figures import figure_markdown
from harness import Figure, interleave, start_search_server
from recording import recorded
from rich.console import Console

from tapo.tools.search.bm25 import BM25Index
from tapo.tools.search.client import RetrievalClient
from tapo.tools.search.tool import SearchTool

VOCABULARY = 60_000


def _words(rng: np.random.Generator) -> np.ndarray:
    """A synthetic vocabulary of pronounceable words (so the stemmer has real work)."""
    syllables = np.array(["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "ri", "do", "fe", "gu"])
    picks = rng.integers(0, len(syllables), size=(VOCABULARY, 4))
    lengths = rng.integers(2, 5, size=VOCABULARY)
    return np.array(["".join(syllables[row[:n]]) for row, n in zip(picks, lengths, strict=True)])


def corpus(passages: int, seed: int = 0) -> Iterator[dict[str, str]]:
    rng = np.random.default_rng(seed)
    words = _words(rng)
    for i in range(passages):
        length = int(rng.integers(40, 121))
        ids = np.minimum(rng.zipf(1.2, size=length + 3) - 1, VOCABULARY - 1)
        yield {"id": str(i), "title": " ".join(words[ids[:3]]).title(), "text": " ".join(words[ids[3:]])}


def queries(passages: int, count: int, seed: int = 1) -> list[str]:
    """Words drawn from random passages (regenerated with the corpus seed), so each query matches something."""
    rng = np.random.default_rng(seed)
    wanted = set(rng.choice(passages, size=count, replace=False).tolist())
    out = []
    for row_number, row in enumerate(corpus(passages)):
        if row_number in wanted:
            tokens = row["text"].split()
            out.append(" ".join(rng.choice(tokens, size=int(rng.integers(3, 7)), replace=False)))
    return out


def latency(index: BM25Index, qs: list[str], k: int) -> dict[str, float]:
    """Per-query latency over ``qs`` on one thread: median, 95th percentile and queries per second."""
    times = []
    for query in qs:
        start = time.perf_counter()
        index.search(query, k)
        times.append(time.perf_counter() - start)
    ms = sorted(t * 1000 for t in times)
    return {"p50_ms": statistics.median(ms), "p95_ms": ms[int(0.95 * (len(ms) - 1))], "qps": len(ms) / (sum(ms) / 1000)}


async def hammer(url: str, qs: list[str], k: int, concurrency: int, batch: int) -> dict[str, float]:
    """Send every query (``batch`` per request) with ``concurrency`` requests in flight; queries per second."""
    requests = [qs[i : i + batch] for i in range(0, len(qs), batch)]
    pending = iter(requests)

    async def worker(client: httpx.AsyncClient) -> None:
        for chunk in pending:
            reply = await client.post("/retrieve", json={"queries": chunk, "topk": k, "return_scores": True})
            reply.raise_for_status()

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"queries_per_s": len(qs) / elapsed, "requests_per_s": len(requests) / elapsed}


async def tool_calls(url: str, qs: list[str], k: int, max_batch: int, in_flight: int = 64) -> dict[str, float]:
    """``SearchTool`` calls over ``RetrievalClient`` (no cache), ``in_flight`` at once like a rollout's trajectories;
    ``max_batch`` 1 sends one request per call, more lets the client coalesce concurrent calls."""
    tool = SearchTool(RetrievalClient(url, timeout_s=60, max_batch=max_batch), topk=k, timeout_s=60)
    limit = asyncio.Semaphore(in_flight)

    async def one(query: str) -> bool:
        async with limit:
            return (await tool.call(query)).ok

    start = time.perf_counter()
    oks = await asyncio.gather(*(one(query) for query in qs))
    elapsed = time.perf_counter() - start
    await tool.aclose()
    if not all(oks):
        raise RuntimeError(f"{oks.count(False)} tool calls failed")
    return {"queries_per_s": len(qs) / elapsed}


SERVER_VARIANTS = {
    "raw, 1 in flight, 1 query/request": ("raw", 1, 1),
    "raw, 16 in flight, 1 query/request": ("raw", 16, 1),
    "raw, 4 in flight, 32 queries/request": ("raw", 4, 32),
    "SearchTool, 64 in flight, backend.max_batch=1": ("tool", 64, 1),
    "SearchTool, 64 in flight, backend.max_batch=32 (default)": ("tool", 64, 32),
}
"""Name -> (client, requests or calls in flight, queries per request or the client's max_batch)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run: 10,000 passages, 200 queries")
    parser.add_argument("--passages", type=int, default=None, help="default 100,000 (--quick 10,000)")
    parser.add_argument("--queries", type=int, default=None, help="default 1,000 (--quick 200)")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of interleaved variants (at least 3)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "bench")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a ratio from fewer rounds says nothing about its spread")
    passages = args.passages or (10_000 if args.quick else 100_000)
    say = Console(soft_wrap=True).print
    with (
        tempfile.TemporaryDirectory(prefix="bench-search-") as tmp,
        recorded("search", args.quick, args.out, say) as run,
    ):
        run.notes.append(
            f"{passages:,} generated passages, {args.queries or (200 if args.quick else 1000):,} queries, k = {args.k}"
        )
        rows = list(corpus(passages))  # generated once, outside every timed region
        qs = queries(passages, args.queries or (200 if args.quick else 1000))
        index_dir = Path(tmp) / "index"

        def build(_variant: str, round_index: int) -> dict[str, float]:
            shutil.rmtree(index_dir, ignore_errors=True)
            start = time.perf_counter()
            BM25Index.build(rows, index_dir)
            seconds = time.perf_counter() - start
            disk = sum(p.stat().st_size for p in index_dir.iterdir()) / 2**20
            return {"build_s": seconds, "passages_per_s": passages / seconds, "disk_mb": disk}

        figures = [
            interleave(
                Figure(
                    "BM25 index build (rows in memory -> index on disk)",
                    "build_s",
                    "s",
                    "build",
                    ["build"],
                    higher_is_better=False,
                    columns={"passages_per_s": "passages/s", "disk_mb": "index MB"},
                ),
                build,
                args.rounds,
                on_sample=say,
            )
        ]
        indexes = {
            "in memory": BM25Index.load(index_dir, mmap=False),
            "memory-mapped": BM25Index.load(index_dir, mmap=True),
        }
        for index in indexes.values():
            index.search(qs[0], args.k)  # warm-up
        figures.append(
            interleave(
                Figure(
                    "BM25 query latency, one thread",
                    "p50_ms",
                    "ms",
                    "in memory",
                    list(indexes),
                    higher_is_better=False,
                    columns={"p95_ms": "p95 ms", "qps": "queries/s"},
                ),
                lambda variant, _round: latency(indexes[variant], qs, args.k),
                args.rounds,
                on_sample=say,
            )
        )
        server, url = start_search_server(index_dir)
        try:

            def serve_once(variant: str, _round: int) -> dict[str, float]:
                client, in_flight, size = SERVER_VARIANTS[variant]
                if client == "raw":
                    return asyncio.run(hammer(url, qs * 2, args.k, in_flight, size))
                return asyncio.run(tool_calls(url, qs * 2, args.k, size, in_flight))

            names = list(SERVER_VARIANTS)
            figures.append(
                interleave(
                    Figure("`tapo serve search` over loopback", "queries_per_s", "queries/s", names[0], names),
                    serve_once,
                    args.rounds,
                    on_sample=say,
                )
            )
        finally:
            server.terminate()
            server.wait(10)
        for figure in figures:
            run.figures.append(figure)
            say(figure_markdown(asdict(figure), run.command, args.quick))


if __name__ == "__main__":
    main()
