"""The lease requests' hot statements, run on the driver's own connection.

A renewal runs three statements. Through SQLAlchemy's ``Connection.execute`` each cost 25-45 µs
of Python (an execution context, events, a result object) around 3-5 µs in SQLite itself, which
was a fifth of a renewal's server CPU. :class:`DriverStatement` keeps the statement written in
SQLAlchemy Core (so it is the same SQL for SQLite and PostgreSQL, and the schema's drift test
covers its columns), compiles it once per dialect, and runs it with the DBAPI cursor of the
connection the transaction already holds: the same transaction, SQLAlchemy neither sees nor needs
to see the statement (as the group commit's savepoints, ``servers/_batch.py``).

Only statements whose parameters need no conversion are accepted (strings, integers: checked at
compile time); result columns are converted by their type's own result processor (the JSON
feature list on SQLite), so rows read the same as through SQLAlchemy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None  # the parameters' order for a positional paramstyle; None: by name
    defaults: dict[str, Any]  # the values written into the statement (``pool.c.id == POOL_ID``)
    processors: tuple[Callable[[Any], Any] | None, ...]  # per result column


class DriverStatement:
    """``statement`` compiled once per dialect, executed on the raw DBAPI connection."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _compile(self, dialect: sa.Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        for name, bind in compiled.binds.items():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise TypeError(f"parameter {name!r} needs conversion: run this statement through SQLAlchemy")
        columns: Sequence[Any] = list(self.statement.selected_columns) if isinstance(self.statement, sa.Select) else []
        processors = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        placeholders = {name: None for name, bind in compiled.binds.items() if bind.required}
        defaults = {k: v for k, v in (compiled.construct_params(placeholders) or {}).items() if v is not None}
        return _Compiled(compiled.string, order, defaults, processors)

    def _for(self, conn: sa.Connection) -> _Compiled:
        name = conn.dialect.name
        compiled = self._compiled.get(name)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.setdefault(name, self._compile(conn.dialect))
        return compiled

    def execute(self, conn: sa.Connection, params: Mapping[str, Any]) -> Any:
        """Run in ``conn``'s transaction; the DBAPI cursor (``rowcount``, ``fetchone``)."""
        compiled = self._for(conn)
        raw = conn.connection.dbapi_connection
        assert raw is not None
        values = {**compiled.defaults, **params}
        args: Any = values if compiled.order is None else tuple(values[n] for n in compiled.order)
        cursor = raw.cursor()
        cursor.execute(compiled.sql, args)
        return cursor

    def one_or_none(self, conn: sa.Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row, each column converted as SQLAlchemy would, or None."""
        compiled = self._for(conn)
        cursor = self.execute(conn, params)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None or not compiled.processors:
            return row  # type: ignore[no-any-return]
        return tuple(v if p is None or v is None else p(v) for p, v in zip(compiled.processors, row, strict=True))

    def rowcount(self, conn: sa.Connection, params: Mapping[str, Any]) -> int:
        cursor = self.execute(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


__all__ = ["DriverStatement"]
