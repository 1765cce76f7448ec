"""Fixtures for the store: localstripe (one per session), an SMTP sink and the server per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink
from tests.helpers.browser import browser_page  # noqa: F401 - a fixture for test_browser
from tests.servers.conftest import pg_cluster  # noqa: F401 - a fixture: the throwaway PostgreSQL cluster
from tests.shop.support import WEBHOOK_SECRET, ShopServer

NOWHERE = "http://127.0.0.1:9/"  # the discard port: nothing listens


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    with LocalStripe(log_path=tmp_path_factory.mktemp("localstripe") / "localstripe.log") as server:
        yield server


@pytest.fixture
def stripe_url(localstripe: LocalStripe) -> str:
    return localstripe.url


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def start_shop(
    tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink, *, webhook: bool = True, **config: Any
) -> ShopServer:
    server = ShopServer(tmp_path, stripe_url=localstripe.url, smtp_port=smtp.port, **config).start()
    # One registration name for the session: each test's server replaces the previous one's.
    localstripe.register_webhook(f"{server.url}/shop/stripe/webhook" if webhook else NOWHERE, WEBHOOK_SECRET)
    return server


@pytest.fixture
def shop(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink) -> Iterator[ShopServer]:
    server = start_shop(tmp_path, localstripe, smtp)
    yield server
    server.stop()


@pytest.fixture
def http(shop: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.url, timeout=20, trust_env=False) as client:
        yield client
