"""Server tests run on both databases: ``database_url`` is None (SQLite in the data folder, the
default) or a fresh database on a throwaway PostgreSQL cluster started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.postgres import PostgresCluster, available


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    reason = available()
    if reason is not None:
        pytest.skip(reason)
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()
