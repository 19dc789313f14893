"""A watchdog process that takes a process's children with it when that process dies, even by SIGKILL.

vLLM's ``AsyncLLM`` starts its ``EngineCore`` in a child process (which starts the ``Worker``) whatever
``VLLM_ENABLE_V1_MULTIPROCESSING`` says (only the synchronous ``LLMEngine`` runs in-process, without the per-request
streams the rollout needs), and the engine core does not watch its parent: a killed trainer left both behind,
holding gigabytes. The children are started by vLLM with
multiprocessing's spawn (fork + exec), which clears a parent-death signal armed before it, so none can be set
for them from outside. Instead :class:`ChildReaper` starts this module as a small sibling process
(``python -m tapo.engines.reaper PID``) that dies with the parent itself (parent-death signal, armed between its
fork and exec), keeps a snapshot of the parent's descendants, and when the parent is gone terminates them (then
kills what is left after a grace period). Closing the reaper (a stand-down byte on its stdin) makes it exit without
touching anything; its stdin ending without one means the parent is dying.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys

import psutil

from tapo.io.parent_death import die_with_parent_hook

SNAPSHOT_S = 0.5  # how often the reaper refreshes its list of the parent's descendants
GRACE_S = 5.0  # SIGTERM first, SIGKILL for what is still running after this
SNAPSHOT, STAND_DOWN = b"?", b"x"  # what the parent writes to the reaper's stdin


class ChildReaper:
    """Starts the watchdog for this process and waits until it watches; :meth:`refresh` makes it see the children
    started since (without waiting for its next snapshot); :meth:`close` stands it down (the children were shut
    down cleanly)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if sys.platform.startswith("linux"):
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tapo.engines.reaper", str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                preexec_fn=die_with_parent_hook(),
            )
            self._answer()  # its first snapshot is taken

    def _answer(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        if not self.process.stdout.read(1):
            raise RuntimeError(f"the child reaper exited ({self.process.wait()}) before watching")

    def refresh(self) -> None:
        """Return once the reaper's snapshot includes every child this process has now."""
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.write(SNAPSHOT)
            self.process.stdin.flush()
            self._answer()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.write(STAND_DOWN)  # exit, reap nothing
                self.process.stdin.close()
            self.process.wait(30)


def reap(processes: list[psutil.Process]) -> None:
    """Terminate ``processes`` (those still running: psutil checks the start time, so a reused pid is spared),
    then kill the ones that outlive the grace period."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running():
                process.terminate()
                alive.append(process)
    _, left = psutil.wait_procs(alive, timeout=GRACE_S)
    for process in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def watch(parent_pid: int) -> None:
    """The reaper's loop: snapshot the parent's descendants until stdin closes (stand down) or the parent dies.

    SIGTERM (the parent-death signal, or anyone asking the reaper to end) only sets a flag the loop reads: a handler
    that raised could land anywhere, and one landing after the loop had already ended on the parent's closed stdin
    (its files close just before its death signal is sent) killed the reaper before it reaped. The interrupted
    ``select`` is retried (PEP 475), so the flag is seen within :data:`SNAPSHOT_S`.
    """
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    me = os.getpid()
    descendants: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess, BrokenPipeError):
        parent = psutil.Process(parent_pid)
        request = SNAPSHOT  # the first snapshot tells the parent the reaper watches
        while not stopping and os.getppid() == parent_pid:
            scan = [p for p in parent.children(recursive=True) if p.pid != me]
            if stopping or os.getppid() != parent_pid:
                # the parent died during the scan, so its children may already have been re-parented and left out
                # of it: the snapshot taken while it lived is the one to reap
                break
            descendants = scan
            if request == SNAPSHOT:
                sys.stdout.buffer.write(b".")
                sys.stdout.buffer.flush()
            ready, _, _ = select.select([sys.stdin], [], [], SNAPSHOT_S)
            request = sys.stdin.buffer.read1(1) if ready else b""
            if request == STAND_DOWN:
                return  # the parent closed its engine cleanly
            if ready and not request:
                break  # end of input without a stand-down: the parent is dying (its files close before it is gone)
    reap(descendants)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
