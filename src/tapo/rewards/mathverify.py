"""Symbolic math equivalence with math-verify, in a child process that is killed when it runs late and whose
memory is capped.

math-verify bounds its own work with ``signal.alarm``: that only works in the main thread (elsewhere
``parse`` and ``verify`` raise ValueError, and trainers and evaluators score from worker threads), only
counts whole seconds, and cannot stop a computation stuck in C code (sympy's big-integer arithmetic).
So a child process (``python -m tapo.rewards.mathverify``) runs math-verify in its own main thread, with
math-verify's time-out as a first guard that keeps the child alive, and the parent waits at most
``timeout_s`` for the verdict: past that it kills the child (a fresh one starts on the next call) and the
answer counts as not equivalent. A plain subprocess rather than ``multiprocessing``: spawn re-imports the
caller's main script, which breaks user scripts without a ``__main__`` guard.
"""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import IO

_READY = "ready"
_STARTUP_TIMEOUT_S = 120.0  # importing sympy on a busy 2-core machine takes seconds; never counted as scoring time


def _parse(text: str, timeout_s: int) -> list:
    """Parse as written; a bare expression with no ``$`` gets math delimiters as a second try."""
    from math_verify import parse

    parsed = parse(text, parsing_timeout=timeout_s)
    if not parsed and "$" not in text:
        parsed = parse(f"${text}$", parsing_timeout=timeout_s)
    return parsed


def _serve(timeout_s: int, memory_mb: int) -> None:
    """Child loop: one JSON ``[prediction, gold]`` per stdin line, one JSON verdict per stdout line.

    Its address space is capped at ``memory_mb``: an answer like ``10^{10^{9}}`` raises MemoryError here
    (not equivalent) instead of taking the host's memory.
    """
    import logging
    import resource

    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from math_verify import verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its time-out warnings are expected here
    protocol, sys.stdout = sys.stdout, sys.stderr  # nothing sympy prints may corrupt the protocol
    verify(_parse("x^2+2x", timeout_s), _parse("x(x+2)", timeout_s), timeout_seconds=timeout_s)  # warm sympy's caches
    protocol.write(json.dumps(_READY) + "\n")
    protocol.flush()
    for line in sys.stdin:
        prediction, gold = json.loads(line)
        try:
            gold_parsed, prediction_parsed = _parse(gold, timeout_s), _parse(prediction, timeout_s)
            same = bool(
                gold_parsed and prediction_parsed and verify(gold_parsed, prediction_parsed, timeout_seconds=timeout_s)
            )
        except MemoryError:
            same = False
        protocol.write(json.dumps(same) + "\n")
        protocol.flush()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=5)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def _read_line(stream: IO[str], timeout_s: float) -> str | None:
    """One line from the child, or None when none came within ``timeout_s`` or the child is gone."""
    ready, _, _ = select.select([stream], [], [], max(0.0, timeout_s))
    return (stream.readline() or None) if ready else None


class MathVerifier:
    """``equivalent(prediction, gold)`` by math-verify, returning within ``timeout_s`` whatever the input.

    Thread-safe (calls are serialized on one child process); the child starts on first use.
    """

    def __init__(self, timeout_s: float, memory_mb: int = 2048) -> None:
        if timeout_s <= 0:
            raise ValueError(f"math time-out must be positive, got {timeout_s}")
        if memory_mb < 256:
            raise ValueError(f"the math worker needs at least 256 MB (sympy alone takes ~100 MB), got {memory_mb}")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._finalizer: weakref.finalize | None = None

    def _start(self) -> subprocess.Popen[str]:
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        seconds = str(max(1, math.ceil(self.timeout_s)))
        command = [sys.executable, "-m", "tapo.rewards.mathverify", seconds, str(self.memory_mb)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._finalizer = weakref.finalize(self, _stop, process)
        assert process.stdout is not None
        if _read_line(process.stdout, _STARTUP_TIMEOUT_S) is None:
            self.close()
            raise RuntimeError(f"the math-verify worker did not start within {_STARTUP_TIMEOUT_S:.0f} s")
        self._process = process
        return process

    def equivalent(self, prediction: str, gold: str) -> bool:
        """True when math-verify proves ``prediction`` equal to ``gold`` within the time-out; False otherwise."""
        with self._lock:
            process = self._process or self._start()
            deadline = time.monotonic() + self.timeout_s  # set after start-up: importing sympy is not scoring
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps([prediction, gold]) + "\n")
                process.stdin.flush()
                line = _read_line(process.stdout, deadline - time.monotonic())
            except (BrokenPipeError, OSError):
                line = None  # the child died (memory, signal): same verdict as a time-out
            if line is None:
                self.close()  # late or dead: a fresh child answers the next call
                return False
            return bool(json.loads(line))

    def close(self) -> None:
        """Stop the child process (the next call starts a new one)."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer, self._process = None, None


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
