"""Group commit: the write requests that arrive together share one durable transaction.

A check-in, a heartbeat or a lease renewal changes one or two rows, but each used to be a
transaction of its own: ``BEGIN IMMEDIATE`` and a ``COMMIT`` that waits for the disk (SQLite
``synchronous=FULL``: one fsync per commit; PostgreSQL: one WAL flush). The disk's flush rate
then bounds the server, whatever its CPU (``python -m benchmarks.bounds`` measures it).

:class:`GroupCommit` runs each request's work -- a callable taking the open transaction -- in a
transaction it shares with the requests waiting at the same time, each inside its own
``SAVEPOINT``, and answers every request only after that transaction committed:

* exactly-once rules are unchanged: the requests of a batch run one after the other in one
  transaction, so the second of two requests with one nonce sees the first one's row (replay),
  and a count of activations or seats sees the rows the earlier requests of the batch wrote;
* a request that raises is rolled back to its savepoint alone and gets its own exception; the
  others of its batch still commit;
* nothing is acknowledged before its commit, so a kill -9 loses only requests no client was
  told succeeded (``tests/reliability/test_group_commit_crash.py``; the rules inside one batch:
  ``tests/servers/test_group_commit.py``);
* if the commit itself fails, every request of the batch gets that failure.

Where: SQLite only (``batching``; the stores turn it on for a SQLite engine). SQLite has one
writer at a time, so its commits are one flush each unless the application shares them. On
PostgreSQL each request keeps its own transaction on its own pooled connection: PostgreSQL
already flushes the WAL once for the commits that arrive together, and a batch there would hold
the row locks of several licenses at once, which two replicas could take in opposite orders
(a deadlock) where single-request transactions lock one license row each.

No dedicated thread and no timer: the first caller to find no batch running leads one (it takes
every request queued, up to ``max_batch``); callers arriving meanwhile queue, and when the batch
is committed the oldest of them leads the next. An idle server therefore commits each request
at once (no added latency); a busy one commits as many requests per flush as arrived during the
previous flush. The callers are the servers' worker threads (service methods are synchronous,
see :mod:`._db`), so this blocks like the transaction it replaces.

Using it (each store's ``write``): put everything the request does in the database into one
``work(tx)`` that uses only ``tx`` (opening another transaction inside would wait for the
connection the batch holds), return what the answer needs, and raise after ``write`` returns
for a refusal whose writes must be kept (as the check-in's ``cloned`` verdict does); signing
the answer belongs after ``write``, outside the batch. ``heartbeats.Heartbeats.heartbeat`` is
the smallest example.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

TxT = TypeVar("TxT")
R = TypeVar("R")

MAX_BATCH = 64  # requests per transaction: bounds how long the batch's row locks are held


class _Request:
    __slots__ = ("done", "error", "event", "result", "work")

    def __init__(self, work: Callable[[Any], Any]) -> None:
        self.work = work
        self.event = threading.Event()
        self.done = False  # answered; woken while still False, it leads the next batch
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit(Generic[TxT]):
    """Runs ``work(tx)`` callables in shared transactions from ``begin()`` (see module docstring).

    ``begin`` opens one transaction and yields the store's query object; ``connection(tx)``
    gives its SQLAlchemy connection, for the savepoints."""

    def __init__(
        self,
        begin: Callable[[], AbstractContextManager[TxT]],
        connection: Callable[[TxT], sa.Connection],
        *,
        batching: bool = True,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._begin = begin
        self._connection = connection
        self.batching = batching
        self.max_batch = max_batch
        self._mutex = threading.Lock()
        self._pending: list[_Request] = []
        self._leading = False
        # What the benchmarks and tests read: transactions committed and requests in them.
        self.batches = 0
        self.requests = 0
        self.largest = 0

    def run(self, work: Callable[[TxT], R]) -> R:
        """``work(tx)`` committed (with whatever else was waiting); its result, or its exception."""
        if not self.batching:
            with self._begin() as tx:
                return work(tx)
        request = _Request(work)
        with self._mutex:
            self._pending.append(request)
            follow = self._leading
            self._leading = True
        if follow:
            request.event.wait()
        if not request.done:  # first in, or woken to lead: its own request is in this batch
            self._lead()
        if request.error is not None:
            raise request.error
        result: R = request.result
        return result

    def _lead(self) -> None:
        with self._mutex:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                if self._pending:
                    self._pending[0].event.set()  # not done: it leads the next batch
                else:
                    self._leading = False
            for request in batch:
                request.done = True
                request.event.set()

    def _commit(self, batch: list[_Request]) -> None:
        try:
            with self._begin() as tx:
                conn = self._connection(tx)
                for n, request in enumerate(batch):
                    request.result, request.error = attempt(conn, tx, request.work, f"gc_{n}")
        except BaseException as exc:  # the commit (or BEGIN) failed: nobody's work is durable
            for request in batch:
                request.result, request.error = None, exc
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.requests += len(batch)
        self.largest = max(self.largest, len(batch))


def attempt(conn: sa.Connection, tx: Any, work: Callable[[Any], Any], name: str) -> tuple[Any, Exception | None]:
    """One request's work inside its own savepoint: kept on success, undone alone on failure.

    The savepoint statements go straight to the driver's connection (sqlite3 and psycopg both
    have ``execute``): through SQLAlchemy each pair cost ~13 us, a tenth of that direct. SQLAlchemy
    does not track them, and needs not: they open and close inside the transaction it holds."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute(f"SAVEPOINT {name}")
    try:
        result = work(tx)
    except Exception as exc:
        raw.execute(f"ROLLBACK TO SAVEPOINT {name}")
        raw.execute(f"RELEASE SAVEPOINT {name}")
        return None, exc
    raw.execute(f"RELEASE SAVEPOINT {name}")
    return result, None


__all__ = ["MAX_BATCH", "GroupCommit", "attempt"]
