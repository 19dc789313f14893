"""Python sandbox latency per call, layer by layer, against an unsandboxed ``python -I -c`` as the floor, every
variant interleaved with the others (benchmarks/harness.py).

One call = start, run ``print(sum(i * i for i in range(1000)))``, collect the output. Variants:

- ``python -c``: the floor, an unsandboxed interpreter start (the baseline of the ratios);
- ``sandbox at REV``: the sandbox as it was at ``--baseline`` (a git revision; its ``sandbox.py`` and ``_runner.py``
  are loaded from ``git show``), so the price of a change is a ratio measured in the same run (skipped with the
  reason when that revision's code no longer loads beside today's tapo);
- ``bwrap``: today's sandbox with the seccomp filter and the per-call cgroup switched off;
- ``+ seccomp``, ``+ cgroup``: one layer on; ``all layers``: what a run uses.

A sample is the p50 (and p95) of ``--calls`` calls of one variant; the ratio to the revision is taken within each
round too (a column). Every variant runs twice untimed first (page cache, one-time set-up).

    python benchmarks/bench_sandbox.py            # 5 rounds of 10 calls per variant, against 1b1bb38
    python benchmarks/bench_sandbox.py --quick    # ~1 minute: 3 rounds of 3 calls
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

from figures import figure_markdown
from harness import Figure, interleave
from recording import recorded
from rich.console import Console

from tapo.config.schema import SandboxCodeConfig
from tapo.io.event_loop import EventLoopThread
from tapo.tools.code.sandbox import PythonSandbox

CODE = "print(sum(i * i for i in range(1000)))"
ROOT = Path(__file__).resolve().parent.parent
FLOOR, FULL = "python -c", "all layers"

Call = Callable[[], Awaitable[None]]


async def _floor_once() -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-I", "-c", CODE, stdout=asyncio.subprocess.PIPE)
    await process.communicate()


def _boxed(sandbox) -> Call:
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


def variants(
    config: SandboxCodeConfig, revision: str, workdir: Path
) -> tuple[dict[str, Call], dict[str, str], dict[str, bool]]:
    """Each variant's call, the reason for each that cannot run here, and the layers "all layers" enforces."""
    calls: dict[str, Call] = {FLOOR: _floor_once}
    skipped: dict[str, str] = {}
    if revision:
        name = f"sandbox at {revision}"
        try:
            calls[name] = _boxed(_baseline_sandbox(revision, workdir)(config))
        except Exception as error:  # an old revision's imports may be gone from today's tapo
            skipped[name] = f"does not load here: {type(error).__name__}: {error}"
    calls["bwrap"] = _boxed(PythonSandbox(config, seccomp=False, cgroup=False))
    calls["+ seccomp"] = _boxed(PythonSandbox(config, seccomp=True, cgroup=False))
    calls["+ cgroup"] = _boxed(PythonSandbox(config, seccomp=False, cgroup=True))
    calls[FULL] = _boxed(full := PythonSandbox(config))
    return calls, skipped, full.layers


def latency(loop: EventLoopThread, once: Call, calls: int) -> dict[str, float]:
    """p50 and p95 in ms of ``calls`` sequential calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        loop.run(once())
        times.append(1e3 * (time.perf_counter() - start))
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
    return {"p50_ms": statistics.median(times), "p95_ms": p95}


def add_ratio_to(figure: Figure, reference: str) -> None:
    """A per-round ``÷ reference`` column (the figure's own ratios are to the floor), in rounds that measured it."""
    if not any(reference in samples for samples in figure.rounds):
        return
    for samples in figure.rounds:
        for sample in samples.values() if reference in samples else ():
            sample["vs_reference"] = sample["p50_ms"] / samples[reference]["p50_ms"]
    figure.columns["vs_reference"] = f"÷ {reference} (per round)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run: 3 calls per sample")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, --quick 3)")
    parser.add_argument("--calls", type=int, default=None, help="calls per variant and round (default 10, --quick 3)")
    parser.add_argument("--baseline", default="1b1bb38", help="git revision to compare with ('' for none)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="results directory")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    calls = args.calls or (3 if args.quick else 10)
    if rounds < 3:
        parser.error("--rounds must be at least 3: a ratio from fewer rounds says nothing about its spread")
    say = Console(soft_wrap=True).print
    config = SandboxCodeConfig(timeout_s=30)
    with (
        tempfile.TemporaryDirectory(prefix="bench-sandbox-") as workdir,
        recorded("sandbox", args.quick, args.out, say) as run,
        EventLoopThread() as loop,  # the sandbox's concurrency limit lives on one loop, as in a run
    ):
        variant_calls, skipped, layers = variants(config, args.baseline, Path(workdir))
        run.notes.append(f"one call: `{CODE}`; all layers here: " + ", ".join(f"{k}={v}" for k, v in layers.items()))
        for _ in range(2):  # untimed: page cache and every variant's one-time set-up
            for once in variant_calls.values():
                loop.run(once())
        names = list(variant_calls) + list(skipped)
        figure = Figure(
            f"Python sandbox latency per call (p50 of {calls} calls)",
            "p50_ms",
            "ms",
            FLOOR,
            names,
            higher_is_better=False,
            columns={"p95_ms": "p95 ms"},
            settings={"calls": calls, "baseline": args.baseline or "none"},
            skipped=skipped,
        )
        interleave(figure, lambda name, _round: latency(loop, variant_calls[name], calls), rounds, on_sample=say)
        if args.baseline:
            add_ratio_to(figure, f"sandbox at {args.baseline}")
        run.figures.append(figure)
        say(figure_markdown(asdict(figure), run.command, args.quick))


if __name__ == "__main__":
    main()
