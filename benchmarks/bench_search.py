"""Benchmark the BM25 search stack: index build time and memory, query latency/QPS, and the server's QPS.

The corpus is generated (Zipf-distributed synthetic words, 40 to 120 per passage) so the run needs no download;
queries are 3 to 6 words drawn from random passages, so every query has real hits. The server runs as a real
``tapo serve search`` subprocess and is queried over loopback by concurrent httpx clients.

    .venv/bin/python benchmarks/bench_search.py --passages 100000 --out runs/bench/search.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
from rich.console import Console
from rich.progress import track
from rich.table import Table

from tapo.io.atomic import write_json
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


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency(index: BM25Index, qs: list[str], k: int) -> dict[str, float]:
    times = []
    for query in qs:
        start = time.perf_counter()
        index.search(query, k)
        times.append(time.perf_counter() - start)
    ms = sorted(t * 1000 for t in times)
    return {
        "p50_ms": statistics.median(ms),
        "p95_ms": ms[int(0.95 * (len(ms) - 1))],
        "qps_single_thread": len(ms) / (sum(ms) / 1000),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def server_qps(index_dir: Path, qs: list[str], k: int) -> dict[str, dict[str, float]]:
    port = free_port()
    command = [sys.executable, "-c", "from tapo.cli.main import app; app()", "serve", "search"]
    server = subprocess.Popen(
        [*command, "--index", str(index_dir), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(server.stderr.read().decode())
            try:
                httpx.get(f"{url}/health").raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)
        raw = {
            f"c{concurrency}_b{batch}": asyncio.run(hammer(url, qs, k, concurrency, batch))
            for concurrency, batch in ((1, 1), (16, 1), (4, 32))
        }
        tool = {f"tool_max_batch{size}": asyncio.run(tool_calls(url, qs, k, size)) for size in (1, 32)}
        return raw | tool
    finally:
        server.terminate()
        server.wait(10)


def flatten(tree: dict, prefix: str = "") -> dict:
    flat: dict = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="where the index goes (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    console = Console()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-search-"))
    index_dir = workdir / "index"

    results: dict = {"passages": args.passages, "queries": args.queries, "k": args.k, "cpus": os.cpu_count()}
    rss_before = rss_mb()
    start = time.perf_counter()
    rows = track(corpus(args.passages), total=args.passages, description="building", console=console)
    index = BM25Index.build(rows, index_dir)
    results["build_s"] = time.perf_counter() - start
    results["build_passages_per_s"] = args.passages / results["build_s"]
    results["build_peak_rss_mb"] = peak_rss_mb()
    results["build_rss_growth_mb"] = rss_mb() - rss_before
    results["index_disk_mb"] = sum(p.stat().st_size for p in index_dir.iterdir()) / 2**20
    del index

    qs = queries(args.passages, args.queries)
    for mmap in (False, True):
        before = rss_mb()
        start = time.perf_counter()
        index = BM25Index.load(index_dir, mmap=mmap)
        name = "mmap" if mmap else "memory"
        results[f"load_{name}_s"] = time.perf_counter() - start
        results[f"load_{name}_rss_mb"] = rss_mb() - before
        index.search(qs[0], args.k)  # warm-up
        results[f"query_{name}"] = latency(index, qs, args.k)
        del index
    server_queries = qs * 2
    results["server"] = server_qps(index_dir, server_queries, args.k)

    table = Table("metric", "value", title=f"BM25 search, {args.passages:,} passages")
    for key, value in flatten(results).items():
        table.add_row(key, f"{value:,.2f}" if isinstance(value, float) else str(value))
    console.print(table)
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    main()
