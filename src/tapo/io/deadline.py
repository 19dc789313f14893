"""Closing remote clients under one total deadline.

httpx's ``timeout`` bounds each read, not a request: a server that trickles its reply a byte at a time resets it
with every byte, so a request can last as long as the server likes, and so can anything that waits for it, such
as closing the client after the last question. Every remote call is therefore wrapped in ``asyncio.timeout`` where
it is made, and every close goes through :func:`close_all`, which waits a bounded time and then gives up, so a
command always reaches the point where it writes its results and exits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
"""How long closing waits for clients to finish what they have in flight; each call has its own deadline, so a
close that takes longer is stuck, and waiting on would only lose the command's results."""


async def close_all(
    closers: Mapping[str, Callable[[], Awaitable[None]]], timeout_s: float = CLOSE_TIMEOUT_S
) -> list[str]:
    """Run every closer at once under one deadline and return the names of those that failed or did not finish.

    A closer that raises is logged; one still running at the deadline is logged and cancelled, never awaited
    (a task that ignores cancellation must not hold the caller: the event loop's shutdown reaps it).
    """
    tasks = {asyncio.ensure_future(closer()): name for name, closer in closers.items()}
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    failed = []
    for task in pending:
        task.cancel()
        log.warning("closing %s did not finish within %g s: left behind", tasks[task], timeout_s)
        failed.append(tasks[task])
    for task in done:
        if task.cancelled():
            log.warning("closing %s was cancelled", tasks[task])
            failed.append(tasks[task])
        elif (error := task.exception()) is not None:
            log.warning("closing %s failed: %s: %s", tasks[task], type(error).__name__, error)
            failed.append(tasks[task])
    return sorted(failed)
