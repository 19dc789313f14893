"""A child process that dies with its parent: the Linux parent-death signal, armed between fork and exec."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent_hook() -> Callable[[], None] | None:
    """What a child runs between fork and exec (``preexec_fn``) so the kernel sends it SIGTERM when this process
    dies, ``kill -9`` included (the signal is kept across exec).

    libc is looked up here, in the parent, so the child only makes the one system call (nothing that could wait
    on a lock another thread of the parent held at the fork). None off Linux, where children are not supervised.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return hook
