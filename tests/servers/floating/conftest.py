"""Fixtures for the floating server tests: a test vendor key and a server factory; the CLI in process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from tests.helpers.floating import FloatingHandle, start_floating


class FakeClock:
    """A clock the test moves by hand (server side); requests are signed with the same time."""

    def __init__(self) -> None:
        self.now = int(time.time())

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


@pytest.fixture
def vendor() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def floating(
    tmp_path: Path, vendor: Ed25519PrivateKey, database_url: str | None, request: pytest.FixtureRequest
) -> Iterator[Callable[..., FloatingHandle]]:
    """``floating(seats=3, ttl=60, ...)`` -> a running, provisioned server (stopped after the test),
    on SQLite and on PostgreSQL (tests/servers/conftest.py)."""
    handles: list[FloatingHandle] = []
    databases: dict[str, str | None] = {}

    def database(name: str) -> str | None:
        """One database per named server, as one SQLite file per data folder."""
        if name not in databases:
            fresh = database_url is None or not databases
            databases[name] = database_url if fresh else request.getfixturevalue("pg_cluster").new_database()
        return databases[name]

    def make(name: str = "fls", **kwargs: Any) -> FloatingHandle:
        kwargs.setdefault("vendor_key", vendor)
        kwargs.setdefault("database_url", database(name))
        handle = start_floating(tmp_path / name, **kwargs)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.stop()


def cli(*argv: str | Path) -> int:
    """``mqtt-licensing ARGV`` in this process (its output goes to capsys)."""
    return main([str(a) for a in argv])


def join_token(out: str) -> str:
    """The join token ``floating activate`` / ``install`` printed."""
    return out.split("floating_join_token): ", 1)[1].split(maxsplit=1)[0]
