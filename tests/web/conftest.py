"""The License page in a real browser (Debian's chromium) against a real broker with a
WebSocket listener and the HTTP listener, a real activation server and, where needed,
a real floating server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.servers._run import free_port
from tests.helpers.activation import VendorHandle
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, BrokerHandle
from tests.helpers.browser import browser, page, screenshot_dir, screenshots  # noqa: F401

STORE_URL = "https://vendor.example/shop/upgrade"


@dataclass
class Site:
    """A broker serving the page, and the page's address."""

    broker: BrokerHandle
    vendor: VendorHandle
    http_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"


def start_site(tmp_path: Path, vendor: VendorHandle, name: str = "state", **agent: Any) -> Site:
    """A broker with a ws listener and http_bind; agent options (vendor_public_key=...) pass through.

    free_port() only finds a port free for a moment: on this shared machine another process
    (or Chromium's own outgoing sockets) can take it before the broker binds. Such a start is
    retried with new ports; any other failure is raised at once.
    """
    agent.setdefault("trial_seconds", 0)
    for attempt in range(3):
        http_port = free_port()
        handle = BrokerHandle(
            tmp_path / name,
            vendor=vendor,
            ws_port=free_port(),
            http_bind=f"127.0.0.1:{http_port}",
            store_url=STORE_URL,
            **agent,
        )
        try:
            handle.start()
        except Exception as exc:
            if "address already in use" not in str(exc) or attempt == 2:
                raise
            continue
        try:
            httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5).raise_for_status()
        except httpx.HTTPError:
            handle.stop()  # the HTTP listener lost its port (logged as one line): try others
            if attempt == 2:
                raise
            continue
        return Site(handle, vendor, http_port)
    raise AssertionError("unreachable")


@pytest.fixture
def site(tmp_path: Path, vendor: VendorHandle) -> Iterator[Site]:
    s = start_site(tmp_path, vendor)
    try:
        yield s
    finally:
        s.broker.stop()


def log_in(tab: Any, site: Site, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> None:
    tab.goto(site.url)
    tab.wait_for_selector("body[data-ready=true]")
    tab.fill("#username", username)
    tab.fill("#password", password)
    tab.click("#login-button")


def logged_in(tab: Any, site: Site, **kwargs: Any) -> None:
    """Logged in, the app shown and its first status drawn."""
    log_in(tab, site, **kwargs)
    tab.wait_for_selector("#app-view:not([hidden])")
    tab.wait_for_selector("#state-badge[data-state]")


def wait_state(tab: Any, state: str) -> None:
    tab.wait_for_selector(f"#state-badge[data-state={state}]")


def event_types(tab: Any) -> Any:
    return tab.eval_on_selector_all("#events li", "items => items.map(i => i.dataset.type)")
