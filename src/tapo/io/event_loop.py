"""One long-lived asyncio event loop in a daemon thread, for everything async a run does.

Async clients (httpx pools, semaphores, batching timers) belong to the event loop they first ran in: reused from
another loop they fail (``RuntimeError: Event loop is closed``) or hang. A run therefore creates one
:class:`EventLoopThread`, builds its tools and rollout on it, runs every batch with :meth:`EventLoopThread.run`
and closes its clients on it before :meth:`EventLoopThread.close`. Synchronous code (the trainer, the evaluator,
``tapo chat``) calls in from its own thread; async code on another loop awaits :meth:`EventLoopThread.arun`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    """An event loop running forever in a daemon thread until :meth:`close` (or until it is garbage-collected)."""

    def __init__(self, name: str = "tapo-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        # An owner that forgets close() (a test's throwaway runner) must not leave a thread behind.
        self._finalizer = weakref.finalize(self, _shut_down, self._loop, self._thread)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        if self.closed:
            coro.close()
            raise RuntimeError("the event loop thread is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("run() was called from inside its own event loop (it would wait forever): await it")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result; an interrupt of the caller (Ctrl-C) cancels it."""
        future = self._submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on this loop from any loop (directly when already on it); cancelling the caller cancels it."""
        if threading.current_thread() is self._thread:
            return await coro
        return await asyncio.wrap_future(self._submit(coro))

    def close(self) -> None:
        """Cancel what still runs, stop the loop and join its thread; closing twice is a no-op."""
        self._finalizer()

    def __enter__(self) -> EventLoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shut_down(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Cancel the loop's tasks, let them unwind, stop it, and close it once its thread has returned."""

    async def drain() -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_asyncgens()
        await loop.shutdown_default_executor()

    if threading.current_thread() is thread:  # collected on its own thread: it cannot wait for itself
        loop.call_soon(loop.stop)
        return
    if thread.is_alive() and not loop.is_closed():
        # A task that ignores cancellation must not keep the loop alive: stop it anyway.
        with contextlib.suppress(TimeoutError, RuntimeError, asyncio.CancelledError):
            asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
    if not thread.is_alive():
        loop.close()
