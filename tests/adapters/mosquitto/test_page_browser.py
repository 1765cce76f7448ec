"""The License page in a real browser (Debian's chromium) against Mosquitto: the page from the
agent's HTTP listener, its MQTT over Mosquitto's websockets listener, the plugin carrying the
`$license` requests to the agent and the replies back. Log in, see the status, activate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mqtt_licensing.servers._run import free_port
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD
from tests.helpers.browser import browser, page, screenshot_dir, screenshots  # noqa: F401
from tests.helpers.mosquitto import MosquittoHandle

pytestmark = pytest.mark.timeout(120)


def test_log_in_see_the_status_and_activate_over_mosquitto(
    tmp_path: Path,
    plugin: Path,
    vendor: Any,
    page: Any,  # noqa: F811
    screenshots: Any,  # noqa: F811
) -> None:
    key = vendor.issue(features=["mqtt_server"], max_connections=10)
    license_id = vendor.license_id(key)
    http_port = free_port()
    with MosquittoHandle(
        tmp_path / "b", plugin, vendor=vendor, ws_port=free_port(), http_bind=f"127.0.0.1:{http_port}", trial_seconds=0
    ):
        page.goto(f"http://127.0.0.1:{http_port}/")
        page.wait_for_selector("body[data-ready=true]")
        page.fill("#username", ADMIN)
        page.fill("#password", ADMIN_PASSWORD)
        page.click("#login-button")
        page.wait_for_selector("#app-view:not([hidden])")
        page.wait_for_selector("#state-badge[data-state=unlicensed]")  # the status, over Mosquitto
        screenshots.take(page, "mosquitto-unlicensed")

        page.fill("#online-key", key)
        page.wait_for_selector("#online-key-check.good")
        page.click("#online-activate")
        page.wait_for_selector("#state-badge[data-state=active]")
        assert page.text_content("#d-license-id") == license_id
        assert page.text_content("#d-connections").startswith("0 of 10")
        page.wait_for_selector("#events li[data-type=activated]")  # $license/events, through the plugin
        screenshots.take(page, "mosquitto-active")
