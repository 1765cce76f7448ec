"""The hottest statements (a heartbeat's and a check-in's lookups by primary key, the heartbeat's
UPDATE, the nonce check) run on the driver's cursor, compiled once per dialect.

Why: through ``Connection.execute`` each of them cost ~40 us of SQLAlchemy (execution context,
events, result object) around ~5 us of SQLite, about a fifth of a heartbeat's CPU. A
:class:`Prepared` keeps the Core statement as the one definition (the storage seam is unchanged:
same tables, same SQL SQLAlchemy would send, on both dialects), compiles it once per dialect,
and sends it on the transaction's own DBAPI connection: no new transaction, no autocommit,
nothing SQLAlchemy must track. Rows come back through the column types' own result
processors, as SQLAlchemy would return them (``tests/servers/test_prepared.py``).

Only statements with a fixed shape qualify: the parameters are named ``bindparam``s, the
columns fixed. Anything else goes through SQLAlchemy as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

Processor = Callable[[Any], Any] | None


@dataclass
class _Plan:
    sql: str
    names: tuple[str, ...] | None  # parameter order for a positional paramstyle (SQLite's qmark)
    columns: tuple[Any, ...]  # the returned columns
    # Their result processors, from the first result's cursor description: a type's processor
    # may depend on the type code the driver reports (PostgreSQL's numerics), as in SQLAlchemy.
    processors: tuple[Processor, ...] | None = None

    def process(self, dialect: sa.Dialect, description: Any) -> tuple[Processor, ...]:
        if self.processors is None:
            self.processors = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(self.columns, description, strict=True)
            )
        return self.processors


class Prepared:
    """One Core statement, run on the DBAPI cursor of a connection inside its transaction."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._plans: dict[str, _Plan] = {}

    def _plan(self, dialect: sa.Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            compiled = self.statement.compile(dialect=dialect)
            names = tuple(compiled.positiontup or ()) if compiled.positional else None
            columns = list(getattr(self.statement, "selected_columns", None) or ())
            returning = getattr(self.statement, "_returning", None) or ()
            columns += list(returning)
            plan = _Plan(str(compiled), names, tuple(columns))
            self._plans[dialect.name] = plan
        return plan

    def _run(self, conn: sa.Connection, params: Mapping[str, Any]) -> tuple[Any, _Plan]:
        plan = self._plan(conn.dialect)
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        cursor.execute(plan.sql, tuple(params[n] for n in plan.names) if plan.names is not None else dict(params))
        return cursor, plan

    def first(self, conn: sa.Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as ``{column: value}`` (values as SQLAlchemy returns them), or None."""
        cursor, plan = self._run(conn, params)
        try:
            row = cursor.fetchone()
            if row is None:
                return None
            processors = plan.process(conn.dialect, cursor.description)
        finally:
            cursor.close()
        return {
            column.key: (process(value) if process is not None and value is not None else value)
            for column, value, process in zip(plan.columns, row, processors, strict=True)
        }

    def rowcount(self, conn: sa.Connection, params: Mapping[str, Any]) -> int:
        """Rows an UPDATE or DELETE changed."""
        cursor, _plan = self._run(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


__all__ = ["Prepared"]
