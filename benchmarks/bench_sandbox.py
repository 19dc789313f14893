"""Python sandbox latency per call against an unsandboxed ``python -c`` as the floor, measured side by side.

Usage: ``.venv/bin/python benchmarks/bench_sandbox.py [--calls 30]``. Prints a table; the ratio p50/p50 is the
price of isolation (bwrap namespaces, binds, the runner and its rlimits).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from rich.console import Console
from rich.progress import track
from rich.table import Table

from tapo.config.schema import CodeConfig
from tapo.io.loop import EventLoopThread
from tapo.tools.code.sandbox import PythonSandbox

CODE = "print(sum(i * i for i in range(1000)))"


async def _floor_once() -> float:
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(sys.executable, "-I", "-c", CODE, stdout=asyncio.subprocess.PIPE)
    await process.communicate()
    return time.perf_counter() - start


async def _sandbox_once(sandbox: PythonSandbox) -> float:
    start = time.perf_counter()
    result = await sandbox.run(CODE)
    assert result.ok, result
    return time.perf_counter() - start


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    sandbox = PythonSandbox(CodeConfig(timeout_s=30))
    floor: list[float] = []
    boxed: list[float] = []
    with EventLoopThread() as loop:  # the sandbox's concurrency limit lives on one loop, as in a run
        for _ in track(range(args.calls), description="interleaved calls"):
            floor.append(loop.run(_floor_once()))
            boxed.append(loop.run(_sandbox_once(sandbox)))
    table = Table(title=f"Python sandbox latency per call ({args.calls} calls each, isolated={sandbox.isolated})")
    for column in ("", "p50 ms", "p95 ms", "ratio p50", "ratio p95"):
        table.add_column(column, justify="right")
    fp50, fp95 = _p(floor, 50), _p(floor, 95)
    table.add_row("python -c (floor)", f"{fp50 * 1e3:.1f}", f"{fp95 * 1e3:.1f}", "1.00", "1.00")
    bp50, bp95 = _p(boxed, 50), _p(boxed, 95)
    table.add_row("sandbox", f"{bp50 * 1e3:.1f}", f"{bp95 * 1e3:.1f}", f"{bp50 / fp50:.2f}", f"{bp95 / fp95:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
