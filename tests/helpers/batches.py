"""Run jobs through a server's batch thread (``servers/_jobs.JobBatcher``) as one batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from mqtt_licensing.servers._jobs import Job, JobBatcher


def in_one_batch(batcher: JobBatcher, makes: list[Callable[[], Job[Any, Any]]]) -> list[Any]:
    """Run ``makes`` through the batch thread as one batch: the thread is held busy by a first job
    until all of them are queued. Each outcome is the result or the exception."""
    gate, started = threading.Event(), threading.Event()

    def held() -> Job[Any, Any]:
        started.set()
        gate.wait(30)
        return Job(lambda tx: None, lambda _: None)

    async def run() -> list[Any]:
        first = asyncio.ensure_future(batcher.run(held))
        await asyncio.sleep(0)  # queued
        assert started.wait(30)  # the thread took the first job and waits in it
        rest = [asyncio.ensure_future(batcher.run(make)) for make in makes]
        await asyncio.sleep(0)  # every request queued
        gate.set()
        await first
        return list(await asyncio.gather(*rest, return_exceptions=True))

    before = batcher.batches
    outcomes = asyncio.run(run())
    assert batcher.batches == before + 2  # the holder's batch, then all of these in one
    return outcomes
