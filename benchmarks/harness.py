"""Interleaved A/B(/C…) measurement shared by the benchmarks, so that every ratio they report is honest.

On a shared or throttled CPU the speed of the machine drifts by tens of per cent within minutes, so variants timed
one after the other compare the machine's moods, not the variants. Here variants run alternately over several
rounds, the order rotated every round (no variant always runs first, after a cold cache, or last); each figure gives
the median and [min–max] per variant and the ratio to a baseline computed within each round (the median and range
of the per-round ratios: both sides of a ratio saw the same minute of the machine). Around every figure the run
records the load average (``uptime``), the torch thread counts, and processes that compete for the CPU or outlived
an engine (vLLM's ``EngineCore``), and warns loudly about them. A benchmark run (:mod:`recording`) saves its figures
to JSON, each with the exact command that produced it; :mod:`figures` renders them (markdown, a PNG and the figures
section of docs/benchmarks.md). This module imports neither: both build on it.

Variants that need their own interpreter (vLLM lives in another virtual environment) or their own process (a
trainer that owns its loop) run in a :class:`Worker`, a long-lived subprocess driven by one JSON line per request,
so they interleave with the others like in-process variants.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import psutil

Sample = dict[str, float]
"""One measurement of one variant in one round: the figure's metric and any other numbers worth keeping."""

ENGINE_MARKERS = ("EngineCore", "VLLM::", "vllm.entrypoints", "vllm serve")
"""Process names or command lines of vLLM engine processes (an engine that outlived its parent holds GBs)."""

REPLY = "@harness-reply "
"""Marks a worker's reply line; anything else a worker prints on stdout goes to its log."""

BUSY_PERCENT = 10.0
"""A process outside this run using more CPU than this (per cent of one core) is competition worth a warning."""


# ---------------------------------------------------------------- statistics


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """The variants' order in round ``round_index``: rotated by one each round, so each leads once per cycle."""
    if not names:
        return []
    shift = round_index % len(names)
    return [*names[shift:], *names[:shift]]


@dataclass(frozen=True)
class Spread:
    """Median and range of a handful of measurements (too few for a meaningful standard deviation)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(statistics.median(values), min(values), max(values))

    def format(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}–{self.high:.{digits}f}]"


def round_ratios(rounds: Sequence[dict[str, Sample]], variant: str, baseline: str, key: str) -> list[float]:
    """``variant / baseline`` of ``key`` within each round where both were measured (and the baseline is not 0)."""
    return [
        r[variant][key] / r[baseline][key] for r in rounds if variant in r and baseline in r and r[baseline][key] != 0
    ]


# ---------------------------------------------------------------- the machine's state


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def _uptime_line() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _own_pids() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


def _describe(process: psutil.Process) -> dict[str, Any]:
    with process.oneshot():
        command = " ".join(" ".join(process.cmdline()).split())[:160]  # one line, even for a `python -c` script
        return {
            "pid": process.pid,
            "name": process.name(),
            "command": command,
            "rss_mb": process.memory_info().rss >> 20,
        }


def engine_leftovers() -> list[dict[str, Any]]:
    """vLLM engine processes that are not this run's own (children of an engine that died, or of another run)."""
    mine = _own_pids()
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid in mine:
                continue
            text = f"{process.name()} {' '.join(process.cmdline())}"
            if any(marker in text for marker in ENGINE_MARKERS):
                found.append(_describe(process))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def busy_processes(window_s: float = 1.0, threshold: float = BUSY_PERCENT) -> list[dict[str, Any]]:
    """Processes outside this run that used more than ``threshold`` % of a core during ``window_s`` seconds."""
    mine = _own_pids()

    def cpu_times() -> dict[int, tuple[psutil.Process, float]]:
        seen = {}
        for process in psutil.process_iter():
            try:
                if process.pid not in mine:
                    times = process.cpu_times()
                    seen[process.pid] = (process, times.user + times.system)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return seen

    first = cpu_times()
    time.sleep(window_s)
    busy = []
    for pid, (process, used) in cpu_times().items():
        percent = 100 * (used - first[pid][1]) / window_s if pid in first else 0.0
        if percent > threshold:
            try:
                busy.append(_describe(process) | {"cpu_percent": round(percent, 1)})
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
    return sorted(busy, key=lambda p: -p["cpu_percent"])


def machine_state() -> dict[str, Any]:
    """Load, thread counts, competing processes and engine leftovers now (takes about a second)."""
    import torch

    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg": [round(x, 2) for x in load_average()],
        "uptime": _uptime_line(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "busy": busy_processes(),
        "engine_leftovers": engine_leftovers(),
    }


def warnings_of(state: dict[str, Any], when: str) -> list[str]:
    """One line per reason the numbers taken around ``state`` may be off: load, competing processes (the three
    busiest named), engine processes left over by an earlier run."""
    lines = []
    cores = len(os.sched_getaffinity(0))
    if state["loadavg"][0] > 0.5 * cores:
        lines.append(f"{when}: load average {state['loadavg'][0]:.2f} on {cores} cores: the machine is busy")
    if state["busy"]:
        top = ", ".join(f"{p['name']} {p['cpu_percent']:.0f} %" for p in state["busy"][:3])
        lines.append(f"{when}: {len(state['busy'])} other processes used > {BUSY_PERCENT:g} % of a core ({top})")
    lines += [
        f"{when}: vLLM process pid {p['pid']} ({p['name']}, {p['rss_mb']} MB) not started by this run: a leftover "
        "or another run's, competing for CPU and memory"
        for p in state["engine_leftovers"]
    ]
    return lines


def run_warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """A run's warnings from its states before and after (each figure records its own; the docs summarize those),
    an engine process seen at both ends named once."""
    lines = warnings_of(before, "before the run") if before else []
    if after:
        known = {p["pid"] for p in before.get("engine_leftovers", [])}
        new = [p for p in after["engine_leftovers"] if p["pid"] not in known]
        lines += warnings_of(after | {"engine_leftovers": new}, "after the run")
    return lines


def host() -> dict[str, Any]:
    """What the figures were measured on (they mean nothing without it)."""
    import torch

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


# ---------------------------------------------------------------- figures


@dataclass
class Figure:
    """One table: ``variants`` measured interleaved under one setting, ``metric`` the number compared.

    ``columns`` names other sample keys to show (key -> column label); ``rounds[i]`` maps each variant measured in
    round i to its sample, ``orders[i]`` is the order they ran in; ``skipped`` maps a variant that could not run
    here to the reason.
    """

    title: str
    metric: str
    unit: str
    baseline: str
    variants: list[str]
    higher_is_better: bool = True
    columns: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    rounds: list[dict[str, Sample]] = field(default_factory=list)
    orders: list[list[str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


Measure = Callable[[str, int], Sample]
"""``measure(variant, round_index)`` -> the sample of one run of ``variant``."""


def interleave(figure: Figure, measure: Measure, rounds: int, on_sample: Callable[[str], None] | None = None) -> Figure:
    """Run ``figure``'s variants (less the skipped ones) alternately for ``rounds`` rounds, order rotated each round.

    A variant whose ``measure`` raises is marked skipped with the error and left out of later rounds; the machine's
    state is recorded before and after.
    """
    figure.before = machine_state()
    for index in range(rounds):
        order = rotated([v for v in figure.variants if v not in figure.skipped], index)
        figure.orders.append(order)
        samples: dict[str, Sample] = {}
        for variant in order:
            if variant in figure.skipped:  # failed earlier in this round
                continue
            try:
                samples[variant] = measure(variant, index)
            except Exception as error:  # one variant's failure must not lose the others' figures
                figure.skipped[variant] = f"failed in round {index + 1}: {type(error).__name__}: {error}"
                continue
            if on_sample is not None:
                on_sample(f"round {index + 1}/{rounds} {variant}: {samples[variant][figure.metric]:.4g} {figure.unit}")
        figure.rounds.append(samples)
    figure.after = machine_state()
    return figure


def interleave_workers(
    figure: Figure,
    workers: dict[str, Worker],
    request: dict[str, Any],
    rounds: int,
    say: Callable[[str], None],
    label: str = "",
) -> Figure:
    """One untimed ``request`` per worker first (loads, allocator and kernel warm-up; a worker that fails it is
    skipped with the reason), then :func:`interleave` of the same request."""
    for name in rotated(list(workers), 0):
        say(f"warming up {name}{label}")
        try:
            workers[name].request(request)
        except RuntimeError as error:
            figure.skipped[name] = f"failed to start: {error}"
    return interleave(figure, lambda name, _round: workers[name].request(request), rounds, on_sample=say)


# ---------------------------------------------------------------- variants in processes of their own


class Worker:
    """A long-lived measuring subprocess: :meth:`request` sends one JSON line and waits for one back.

    The worker side calls :func:`serve` (or uses a :class:`Channel`). Its stderr goes to ``log`` (shown when it
    fails). It runs in a session of its own, so :meth:`close` can end whatever it started (vLLM's engine process)
    with it: an engine that outlives its parent would skew every later figure.
    """

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._log_file = log.open("w")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise RuntimeError(f"worker exited; last lines of {self.log}: {self.tail()}") from None
        while (line := self.process.stdout.readline()) and not line.startswith(REPLY):
            self._log_file.write(line)  # printed before the worker took stdout over (imports, start-up)
        if not line:
            raise RuntimeError(f"worker exited with {self.process.wait()}; last lines of {self.log}: {self.tail()}")
        reply = json.loads(line.removeprefix(REPLY))
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def tail(self, lines: int = 5) -> str:
        self._log_file.flush()
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])

    def close(self, timeout_s: float = 60) -> None:
        """Close its input (the worker's loop ends), wait, then end its whole session if anything is left."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout_s)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # its session: engine processes it started and did not end
        self.process.wait()
        self._log_file.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Channel:
    """The worker's side of a :class:`Worker`: requests on stdin, replies on the original stdout.

    Libraries print to stdout (vLLM logs there), which would corrupt the replies, so fd 1 is pointed at stderr and
    replies go to a private copy of the original stdout, marked with :data:`REPLY` (what was printed before the
    worker took stdout over is passed to the log).
    """

    def __init__(self) -> None:
        sys.stdout.flush()
        self._out: TextIO = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)

    def receive(self) -> dict[str, Any] | None:
        line = sys.stdin.readline()
        return json.loads(line) if line else None

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(REPLY + json.dumps(message) + "\n")
        self._out.flush()


def serve(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Answer requests until stdin closes; a request that raises is answered with its error (the worker lives on)."""
    channel = Channel()
    while (message := channel.receive()) is not None:
        try:
            channel.send(handler(message))
        except Exception as error:
            traceback.print_exc()
            channel.send({"error": f"{type(error).__name__}: {error}"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_search_server(index_dir: Path, delay_s: float = 0.0) -> tuple[subprocess.Popen, str]:
    """``tapo serve search`` in a process of its own on a free loopback port, holding every request ``delay_s``
    seconds, once it answers ``/health``: as a deployment runs it (in the measuring process its request handling
    would compete with what is measured for the interpreter lock)."""
    port = free_port()
    command = [sys.executable, "-c", "from tapo.cli.main import app; app()", "serve", "search"]
    arguments = ["--index", str(index_dir), "--port", str(port), "--delay-s", str(delay_s)]
    server = subprocess.Popen([*command, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise RuntimeError(server.stderr.read().decode() if server.stderr else "server exited")
        try:
            httpx.get(f"{url}/health").raise_for_status()
            return server, url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("server did not start within 120 s") from None
            time.sleep(0.2)
