"""The database both servers use: engine creation and versioned schemas (Alembic migrations).

Storage seam: servers talk to the database only through SQLAlchemy Core in their own ``store``
module, and every change of state that counts runs inside one ``engine.begin()`` transaction. On
SQLite that transaction starts with ``BEGIN IMMEDIATE`` so two writers can never both read "one
activation left"; on PostgreSQL the stores lock the row they count under with ``SELECT ... FOR
UPDATE``.

Threads: the database is blocking, so one rule holds for both servers. Service methods (and the
stores under them) are synchronous and are called from an event loop only through
``run_in_threadpool`` / ``asyncio.to_thread`` (or ``_threads.in_thread``, the hot routes'): routes,
the ``/metrics`` scrape (its gauges count in SQL, ``COUNT ... GROUP BY``, never reading rows) and
the background duties alike. Nothing on a loop opens a transaction.

Schemas: each server keeps its Alembic scripts in its own ``migrations/`` folder and its own
version table, and :func:`migrate` brings a database to the newest revision when the server opens
it (no ``alembic.ini`` at run time). The migrations run in one such transaction, so two processes
opening the same new database at once cannot both create it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..core.errors import ErrorCode, LicensingError


def normalize_url(url: str) -> str:
    """A plain ``postgresql://`` (or ``postgres://``) URL means psycopg 3, the driver we ship for it."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_db_engine(url: str) -> sa.Engine:
    """An engine whose transactions are safe for exact counting (see module docstring)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        # SQLite takes one writer at a time anyway; one pooled connection makes this process's
        # writers queue in order on the pool instead of sleeping in SQLite's busy-retry backoff
        # (which put the p99 of concurrent check-ins in seconds). Other processes on the same
        # file (the CLI next to a running server) still meet SQLite's own lock.
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=sa.pool.QueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")

        return engine
    try:
        # Replicas share one database: a modest pool per process keeps 2-3 replicas (and the CLI)
        # well inside PostgreSQL's default max_connections of 100.
        return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    except ImportError as exc:
        fix = "pip install 'mqtt-licensing[postgresql]'" if url.startswith("postgresql") else "install its driver"
        raise LicensingError(
            ErrorCode.BAD_REQUEST,
            f"the database driver for {url.split(':', 1)[0]} is not installed ({exc.name}): {fix}",
        ) from None
    except sa.exc.ArgumentError:
        raise LicensingError(
            ErrorCode.BAD_REQUEST,
            f"{redact_url(url)} is not a database URL: give e.g. postgresql://user:password@host/database",
        ) from None


_READ_ONLY = "mqtt_licensing_read_only"


@contextmanager
def reading(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read-only transaction with one snapshot, for what people ask by hand (the vendor's lists):
    on SQLite a deferred ``BEGIN``, which in WAL mode neither waits for the writers nor holds them
    up (``BEGIN IMMEDIATE`` takes the write lock: a list of 100,000 rows from the CLI would stall
    every check-in of the server beside it); on PostgreSQL ``REPEATABLE READ, READ ONLY``, so a
    count and the page it heads agree. Never for a read that decides a write."""
    options: dict[str, Any] = {_READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with engine.connect().execution_options(**options) as conn, conn.begin():
        yield conn


class WriterLock:
    """SQLite's one write lock, taken in turn by the processes sharing a database file.

    Two server processes on one file (``vendor serve --workers N``) both write. SQLite alone
    makes the second wait in its busy handler, which sleeps and retries (1, 2, 5 ... 100 ms): a
    process that commits batch after batch (group commit under load) takes the lock again before
    the sleeper looks, and the other's requests wait for seconds. Here a writer first takes an
    exclusive ``flock`` on ``<database>-writer``: the kernel wakes a waiting process the moment
    the lock is let go, so the processes take turns. SQLite's own lock still decides correctness;
    this only orders the waiting. One thread of a process at a time (the pool holds one
    connection anyway); a process that did not take it (an older CLI) is still kept out by SQLite.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        # Reentrant: a transaction opened inside another on one thread meets the pool's own
        # timeout, as it always did, rather than hanging here.
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0  # the process that opened _fd: a forked child opens its own (flock is per open file)

    @contextmanager
    def held(self) -> Iterator[None]:
        if self.path is None:
            yield
            return
        with self._mutex:
            if self._fd is None or self._pid != os.getpid():
                self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
            fd = self._fd
            if self._depth == 0:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(fd, fcntl.LOCK_UN)


def writer_lock(engine: sa.Engine) -> WriterLock:
    """The :class:`WriterLock` of ``engine``'s database file (none for PostgreSQL or in-memory SQLite)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return WriterLock(None)
    return WriterLock(Path(database + "-writer"))


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "the database URL given"  # unparseable: it may hold a password anywhere


def sqlite_url(data_dir: Path, name: str) -> str:
    return f"sqlite:///{(data_dir / name).resolve()}"


@dataclass(frozen=True)
class Schema:
    """One server's versioned schema."""

    name: str  # "activation" or "floating"; names the version table
    migrations: Path  # the Alembic script folder (env.py, versions/)
    # A table every database of this server has had since before versioning: found without a
    # version table, it marks a database made by ``metadata.create_all``, i.e. revision ``baseline``.
    marker_table: str
    baseline: str = "0001"

    @property
    def version_table(self) -> str:
        return f"alembic_version_{self.name}"

    def config(self, conn: sa.Connection) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(self.migrations).replace("%", "%%"))  # ini interpolation
        cfg.attributes["connection"] = conn
        cfg.attributes["version_table"] = self.version_table
        return cfg


def current_revision(conn: sa.Connection, schema: Schema) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": schema.version_table})
    return context.get_current_revision()


def migrate(engine: sa.Engine, schema: Schema) -> None:
    """Bring the database to the newest revision this code knows.

    A database without a version table but with the server's tables predates versioning and is
    stamped at the baseline first; one whose revision this code does not know was written by a
    newer version and is refused, untouched. A database that cannot be reached is
    ``server_unreachable`` saying why, in one line."""
    try:
        _migrate(engine, schema)
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise LicensingError(
            ErrorCode.SERVER_UNREACHABLE,
            f"cannot open the {schema.name} database {redact_url(engine.url.render_as_string())}: {reason}",
        ) from None


# Alembic runs every env.py through one module-level ``alembic.context``: two threads of one
# process migrating at once (two schemas of one database, or two databases) would share it.
# Other processes are kept apart by the database itself (BEGIN IMMEDIATE, the advisory lock).
_ALEMBIC = threading.Lock()


def _migrate(engine: sa.Engine, schema: Schema) -> None:
    with _ALEMBIC, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together: one migrates, the others wait and then find nothing to do
            # (SQLite gets the same from BEGIN IMMEDIATE).
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": schema.version_table})
        cfg = schema.config(conn)
        scripts = ScriptDirectory.from_config(cfg)
        known = {rev.revision for rev in scripts.walk_revisions()}
        current = current_revision(conn, schema)
        if current is not None and current not in known:
            raise LicensingError(
                ErrorCode.STATE_CORRUPT,
                f"the {schema.name} database is at schema revision {current!r}, newer than this version of "
                f"mqtt-licensing knows (up to {scripts.get_current_head()!r}): upgrade mqtt-licensing",
            )
        if current is None and sa.inspect(conn).has_table(schema.marker_table):
            command.stamp(cfg, schema.baseline)
        command.upgrade(cfg, "head")


def run_env() -> None:
    """The body of every ``migrations/env.py``: run on the connection :func:`migrate` passes in."""
    from alembic import context

    conn = context.config.attributes["connection"]
    context.configure(
        connection=conn,
        version_table=context.config.attributes["version_table"],
        render_as_batch=True,  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


__all__ = [
    "Schema",
    "WriterLock",
    "create_db_engine",
    "current_revision",
    "migrate",
    "normalize_url",
    "reading",
    "redact_url",
    "run_env",
    "sqlite_url",
    "writer_lock",
]
