"""Requests run in batches on one thread, answered straight to the event loop.

A write request used to cross four threads: the loop handed it to a worker thread
(``servers/_threads.py``), the worker queued its transaction for the group commit
(``servers/_batch.py``) and slept until a leading worker had committed it, then signed the answer
and woke the loop. At 16 concurrent requests that was seven context switches and a contended GIL
per request, a quarter of a lease renewal's server CPU. Here a request is a :class:`Job`: the
route queues it and awaits a future; one thread takes every job queued, runs their checks (the
``make`` step: parsing, a signature verified before any transaction) and their ``work(tx)`` in one
transaction of the store's group commit (each in its own savepoint, as the group commit does for
its callers); once that transaction committed, a second thread runs their ``finish`` (signing the
answer, or the refusal kept after commit) and wakes the loop once for the whole batch.

The rules are the group commit's: the jobs of a batch run one after the other in one transaction
(the second of two requests with one nonce sees the first one's row), a job that raises is rolled
back to its savepoint alone, and nothing is answered before its transaction committed.

Used by the floating server's lease requests (each locks the pool row first, so one transaction
holding a batch of them takes no lock in another order than a single request would, on
PostgreSQL too) and by the activation server's heartbeats on SQLite (one writer: no lock order to
keep; on PostgreSQL a batch would hold several activations' rows, which two replicas could lock
in opposite orders, so there each heartbeat keeps its own transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa

from ._batch import attempt
from ._db import WriterLock

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")
W = TypeVar("W")

MAX_JOBS = 64  # jobs per transaction: bounds how long the batch's rows stay locked


class Tx(Protocol):
    """What a job's transaction must offer here: its connection, for the savepoints."""

    @property
    def conn(self) -> sa.Connection: ...


class Store(Protocol):
    """A store with a group commit (``write``; its transaction a :class:`Tx`): the floating and
    the activation stores."""

    writer: WriterLock  # SQLite: the processes on one file take its write lock in turn

    def write(self, work: Callable[[Any], W]) -> W: ...


@dataclass(frozen=True)
class Job(Generic[R, T]):
    """What one request does: ``work`` in the transaction, ``finish`` with its result once committed."""

    work: Callable[[Any], R]  # takes the store's own Tx
    finish: Callable[[R], T]
    failed: Callable[[Exception], None] | None = None  # told of the refusal of a job that started

    def run(self, store: Store) -> T:
        """The job on the calling thread, through the store's group commit (not batched here)."""
        try:
            return self.finish(store.write(self.work))
        except Exception as exc:
            if self.failed is not None:
                self.failed(exc)
            raise


@dataclass
class _Queued:
    make: Callable[[], Job[Any, Any]]  # the request's checks before the transaction (may raise)
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    job: Job[Any, Any] | None = None
    result: Any = None
    error: BaseException | None = None


class JobBatcher:
    """One thread running queued jobs in shared transactions (see the module docstring)."""

    def __init__(self, store: Store, max_jobs: int = MAX_JOBS, *, name: str = "jobs") -> None:
        self.store = store
        self.name = name  # its threads' names
        self.max_jobs = max_jobs
        self._queue: deque[_Queued] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._finishing: deque[list[_Queued] | None] = deque()  # committed batches; None: stop
        self._finished = threading.Condition()
        self._finisher: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # transactions committed (the tests and benchmarks read them)
        self.jobs = 0

    async def run(self, make: Callable[[], Job[Any, T]]) -> T:
        """``make()``, its work and its finish on the batch thread; the finish's result."""
        item = _Queued(make, asyncio.get_running_loop(), asyncio.get_running_loop().create_future())
        with self._ready:
            if self._closed:
                raise RuntimeError(f"the {self.name} batcher is closed")
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"{self.name}-batches", daemon=True)
                self._finisher = threading.Thread(target=self._finish, name=f"{self.name}-answers", daemon=True)
                self._thread.start()
                self._finisher.start()
            self._ready.notify()
        result: T = await item.future
        return result

    def close(self) -> None:
        """Finish the jobs queued, then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            thread, finisher = self._thread, self._finisher
        if thread is not None and finisher is not None:
            thread.join()
            finisher.join()

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
            # Several processes on one SQLite file (``serve --workers N``) commit in turn: waiting
            # for ours before taking the batch lets it gather what arrived meanwhile.
            self.store.writer.wait_turn()
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_jobs))]
            if not batch:
                self._hand_over(None)
                return
            try:
                self._run(batch)
            except Exception as exc:  # a fault here, not in a job: its batch fails, the thread serves on
                log.exception("%s batch failed", self.name)
                for item in batch:
                    item.job, item.error = None, exc
            self._hand_over(batch)

    def _hand_over(self, batch: list[_Queued] | None) -> None:
        # The answers are signed on a second thread, so that signing one batch's answers overlaps
        # the next batch's commit (its flush to disk releases the GIL): with everything on this
        # thread, 16 concurrent lease renewals left the CPU idle during every flush.
        with self._finished:
            self._finishing.append(batch)
            self._finished.notify()

    def _run(self, batch: list[_Queued]) -> None:
        for item in batch:
            try:
                item.job = item.make()
            except Exception as exc:
                item.error = exc
        started = [item for item in batch if item.job is not None]
        if started:
            self._commit(started)

    def _finish(self) -> None:
        while True:
            with self._finished:
                while not self._finishing:
                    self._finished.wait()
                batch = self._finishing.popleft()
            if batch is None:
                return
            self._answer(batch)

    def _answer(self, batch: list[_Queued]) -> None:
        for item in batch:
            if item.job is not None and item.error is None:
                try:
                    item.result = item.job.finish(item.result)
                except Exception as exc:
                    item.error = exc
            if item.job is not None and item.job.failed is not None and isinstance(item.error, Exception):
                try:
                    item.job.failed(item.error)
                except Exception:  # the refusal is still answered
                    log.exception("a %s job's failure hook failed", self.name)
        loops: dict[asyncio.AbstractEventLoop, list[_Queued]] = {}
        for item in batch:
            loops.setdefault(item.loop, []).append(item)
        for loop, items in loops.items():  # one wake-up of each loop for the whole batch
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits these answers
                loop.call_soon_threadsafe(_resolve, items)

    def _commit(self, started: list[_Queued]) -> None:
        def work(tx: Tx) -> list[tuple[Any, Exception | None]]:
            out = []
            for n, item in enumerate(started):
                assert item.job is not None
                out.append(attempt(tx.conn, tx, item.job.work, f"job_{n}"))
            return out

        try:
            outcomes = self.store.write(work)
        except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch is durable
            for item in started:
                item.error = exc
            return
        for item, (result, error) in zip(started, outcomes, strict=True):
            item.result, item.error = result, error
        self.batches += 1
        self.jobs += len(started)


def _resolve(items: list[_Queued]) -> None:
    for item in items:
        if item.future.done():  # the request was cancelled (its client went away)
            continue
        if item.error is not None:
            item.future.set_exception(item.error)
        else:
            item.future.set_result(item.result)


__all__ = ["MAX_JOBS", "Job", "JobBatcher"]
