"""Reaping the sandbox's orphans where this process is the one the kernel hands them to.

bwrap's outer process exits as soon as its init (pid 1 of the call's pid namespace) reports the program's exit
status, before that init has exited; the init is then re-parented to the nearest subreaper, or to pid 1. On a normal
host that is the system's init, which reaps it. When tapo itself is pid 1 (a container's entrypoint without
``--init``) or a child subreaper, the init becomes tapo's child, and nothing in asyncio waits for a pid it did not
start: one zombie per call, until pids run out and every call fails. bwrap names its init's pid (``--info-fd``), so
the sandbox waits for exactly that pid, and only where it is re-parented here; a blanket ``waitpid(-1)`` would steal
the exit status of processes asyncio or ``subprocess`` wait for. bwrap looks the init up in ``/proc`` to write it,
so this needs a ``/proc`` of this process's pid namespace (what a container has); without one the init stays a
zombie, said once in a warning.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os

log = logging.getLogger(__name__)

_PR_GET_CHILD_SUBREAPER = 37


@functools.cache
def reaps_orphans() -> bool:
    """Whether orphaned descendants of this process become its children (pid 1, or a child subreaper); warns once
    when this process is pid 1, as then every other orphan below it is left a zombie."""
    flag = ctypes.c_int(0)
    libc = ctypes.CDLL(None, use_errno=True)
    subreaper = libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value != 0
    if os.getpid() != 1 and not subreaper:
        return False
    own_proc = os.path.realpath("/proc/self") == f"/proc/{os.getpid()}"
    if os.getpid() == 1:
        log.warning(
            "tapo runs as pid 1 without an init (a container entrypoint): %s, but any other orphan below it stays "
            "a zombie. Start the container with an init (docker run --init, tini) to reap them.",
            "it reaps the sandbox's own orphaned processes"
            if own_proc
            else "/proc is not of its pid namespace, so even the sandbox's orphans (one per call) stay zombies",
        )
    return own_proc


def init_pid(info: bytes) -> int | None:
    """The host pid of bwrap's init from what bwrap wrote to ``--info-fd`` (None if it wrote nothing usable)."""
    with contextlib.suppress(ValueError, AttributeError):
        pid = json.loads(info).get("child-pid")
        return pid if isinstance(pid, int) and pid > 1 else None
    return None


def reap(pid: int) -> None:
    """Wait for ``pid`` if it is this process's child (re-parented here); blocks until it exits, which a call's
    init does at once: its program has exited or been killed, and ``--die-with-parent`` kills it with bwrap."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
