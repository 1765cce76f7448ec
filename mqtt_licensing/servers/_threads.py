"""The hand-off of a blocking service call from the event loop to a worker thread, for the routes
a fleet calls all the time (check-ins, heartbeats).

Why not Starlette's ``run_in_threadpool`` there: it goes through anyio (a capacity limiter, a
cancel scope, anyio's own worker queue), measured at ~40 us of CPU a call with 16 requests in
flight, against ~10 us for ``loop.run_in_executor`` on a plain thread pool. The semantics kept:
the call runs in a copy of the caller's context (as anyio does), and at most :data:`THREADS`
calls run at once (anyio's default limit), so a fleet's requests still meet in one group commit.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

THREADS = 40

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # a forked worker (servers/_workers.py) makes its own: threads do not cross a fork
_mutex = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        with _mutex:
            if _pool is None or _pool_pid != os.getpid():
                _pool, _pool_pid = ThreadPoolExecutor(THREADS, thread_name_prefix="server-call"), os.getpid()
    return _pool


async def in_thread(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``func(*args, **kwargs)`` on a worker thread, awaited on the loop."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)


__all__ = ["THREADS", "in_thread"]
