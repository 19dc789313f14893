"""Python sandbox latency per call, layer by layer, against an unsandboxed ``python -c`` as the floor.

Usage: ``.venv/bin/python benchmarks/bench_sandbox.py [--rounds 5] [--calls 10] [--baseline 1b1bb38]``.

Variants, interleaved call by call within each round so that a load change on the machine hits all of them alike:

- ``python -c``: the floor, an unsandboxed interpreter start;
- ``baseline``: the sandbox as it was at ``--baseline`` (a git revision; its ``sandbox.py`` and ``_runner.py`` are
  loaded from ``git show``), so the price of a change is a ratio measured in the same run;
- ``bwrap``: today's sandbox with the seccomp filter and the per-call cgroup switched off;
- ``+ seccomp``, ``+ cgroup``: one layer on; ``all layers``: what a run uses.

Each round gives a p50 per variant; the table shows the median of the rounds' p50s with their [min-max], the ratio
to the floor and to the baseline (per round, then median [min-max]), and the load average before and after
(``os.getloadavg()``): on a shared machine, numbers taken under load are only comparable within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from tapo.config.schema import SandboxCodeConfig
from tapo.io.event_loop import EventLoopThread
from tapo.tools.code.sandbox import PythonSandbox

CODE = "print(sum(i * i for i in range(1000)))"
ROOT = Path(__file__).resolve().parent.parent
FLOOR, BASELINE, FULL = "python -c", "baseline", "all layers"


async def _floor_once() -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-I", "-c", CODE, stdout=asyncio.subprocess.PIPE)
    await process.communicate()


def _boxed(sandbox) -> Callable[[], Awaitable[None]]:
    async def once() -> None:
        result = await sandbox.run(CODE)
        assert result.exit_code == 0 and not result.timed_out, result

    return once


def _baseline_sandbox(revision: str, workdir: Path):
    """The sandbox class of ``revision``, loaded from its own ``sandbox.py`` next to its own ``_runner.py``."""
    for name in ("sandbox.py", "_runner.py"):
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:src/tapo/tools/code/{name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (workdir / name).write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("tapo_sandbox_baseline", workdir / "sandbox.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.PythonSandbox


def _span(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    scaled = [v * scale for v in values]
    return f"{statistics.median(scaled):.{digits}f} [{min(scaled):.{digits}f}-{max(scaled):.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10, help="calls per variant and round")
    parser.add_argument("--baseline", default="1b1bb38", help="git revision to compare with ('' for none)")
    args = parser.parse_args()
    config = SandboxCodeConfig(timeout_s=30)
    variants: dict[str, Callable[[], Awaitable[None]]] = {FLOOR: _floor_once}
    with tempfile.TemporaryDirectory() as workdir:
        if args.baseline:
            variants[BASELINE] = _boxed(_baseline_sandbox(args.baseline, Path(workdir))(config))
        variants["bwrap"] = _boxed(PythonSandbox(config, seccomp=False, cgroup=False))
        variants["+ seccomp"] = _boxed(PythonSandbox(config, seccomp=True, cgroup=False))
        variants["+ cgroup"] = _boxed(PythonSandbox(config, seccomp=False, cgroup=True))
        variants[FULL] = _boxed(full := PythonSandbox(config))
        p50s: dict[str, list[float]] = {name: [] for name in variants}
        load_before = os.getloadavg()
        with EventLoopThread() as loop:  # the sandbox's concurrency limit lives on one loop, as in a run
            for _ in range(2):  # warm the page cache and the one-time set-up of every variant
                for once in variants.values():
                    loop.run(once())
            for _ in track(range(args.rounds), description="rounds"):
                times: dict[str, list[float]] = {name: [] for name in variants}
                for _ in range(args.calls):
                    for name, once in variants.items():
                        start = time.perf_counter()
                        loop.run(once())
                        times[name].append(time.perf_counter() - start)
                for name, values in times.items():
                    p50s[name].append(statistics.median(values))
        load_after = os.getloadavg()
    layers = ", ".join(f"{name}={'on' if on else 'unavailable'}" for name, on in full.layers.items())
    table = Table(
        title=f"Python sandbox latency per call: p50 of {args.calls} calls, median "
        rf"\[min-max] over {args.rounds} rounds"
        f"\n{layers}; load avg (1/5/15 min) before "
        f"{'/'.join(f'{x:.1f}' for x in load_before)}, after {'/'.join(f'{x:.1f}' for x in load_after)}"
        f" on {os.cpu_count()} CPUs"
    )
    columns = ["", "p50 ms", "ratio to python -c"] + ([f"ratio to {args.baseline}"] if args.baseline else [])
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in p50s.items():
        row = [name, _span(values, 1e3), _span([v / f for v, f in zip(values, p50s[FLOOR], strict=True)], digits=2)]
        if args.baseline:
            row.append(_span([v / b for v, b in zip(values, p50s[BASELINE], strict=True)], digits=2))
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
