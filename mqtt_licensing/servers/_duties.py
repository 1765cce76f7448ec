"""Background duties of a server (certificate refresh, usage forwarding, the store's fulfilment):
supervised, so no error ends one silently.

A duty is a coroutine that runs for the server's lifetime. :func:`every` makes one from a step
run at an interval: a step that fails is logged (a refusal in one line, anything unexpected with
its traceback) and the next iteration runs as planned. :func:`supervise` runs the duties in one
:class:`asyncio.TaskGroup`, the way aiomqtt runs its background tasks: they end together when the
server stops (cancelled), never one by one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from ..core.errors import LicensingError

log = logging.getLogger(__name__)

Duty = Callable[[], Coroutine[Any, Any, None]]


async def every(name: str, interval: float | Callable[[], float], step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` every ``interval`` seconds for ever; a failed iteration is logged, then the next one runs.

    ``interval`` may be a function read before each sleep (no I/O: a value the last step left),
    for a duty whose pace follows the data (the release of silent activations)."""
    while True:
        wait = interval() if callable(interval) else interval
        await asyncio.sleep(wait)
        try:
            await step()
        except LicensingError as exc:
            log.warning("%s failed (tried again in %g s): %s", name, wait, exc)
        except Exception:
            log.exception("%s failed unexpectedly (tried again in %g s)", name, wait)


async def supervise(duties: Sequence[Duty]) -> None:
    """Run every duty until cancelled, in one task group."""
    async with asyncio.TaskGroup() as group:
        for duty in duties:
            group.create_task(duty())


__all__ = ["Duty", "every", "supervise"]
