"""The License page's details in a real browser, against a real broker (MQTT over WebSocket +
the HTTP listener) and a real activation server: it fetches nothing from elsewhere, a wrong
password and a mistyped key are caught, it fits a phone and works by keyboard, reconnects after
a broker restart, shows alarms and shows clients' text as text. Each state is screenshotted.
The activation flows: test_page_flows.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.broker import MqttClient, connected_clients
from tests.web.conftest import event_types, log_in, logged_in, wait_state

expect = pytest.importorskip("playwright.sync_api").expect
pytestmark = pytest.mark.timeout(120)


def test_nothing_is_fetched_from_anywhere_but_the_broker(page, site):
    """Plants are air-gapped: the page, its script and the MQTT client all come from the broker."""
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("websocket", lambda ws: requested.append(ws.url))
    logged_in(page, site)
    assert any(url.startswith("ws://") for url in requested)
    allowed = (site.url, f"ws://127.0.0.1:{site.broker.ws_port}/", f"blob:{site.url}")  # blob: MQTT.js timer worker
    assert [url for url in requested if not url.startswith(allowed)] == []


def test_wrong_password_shows_an_error(page, site, screenshots):
    log_in(page, site, password="not-the-password")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "wrong username or password" in page.text_content("#login-error")
    assert page.is_hidden("#app-view")
    assert page.input_value("#password") == ""  # nothing to resubmit by accident
    screenshots.take(page, "wrong-password")


def test_a_key_with_one_wrong_character_is_caught_before_sending(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server"])
    typo = key[:-1] + ("0" if key[-1] != "0" else "1")
    logged_in(page, site)
    page.fill("#online-key", typo)
    page.wait_for_selector("#online-key-check.bad")
    assert "checksum does not match" in page.text_content("#online-key-check")
    assert page.is_disabled("#online-activate")
    page.press("#online-key", "Enter")  # submitting anyway sends nothing
    screenshots.take(page, "typo")
    # Fix the typo and activate: had the typo gone out, its command_failed event would
    # have arrived before this activation's events.
    page.fill("#online-key", key)
    page.wait_for_selector("#online-key-check.good")
    page.click("#online-activate")
    wait_state(page, "active")
    page.wait_for_selector("#events li[data-type=command]")
    assert "command_failed" not in event_types(page)


def test_phone_width_renders(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server", "mqtt_server_support"], max_connections=5)
    with site.broker.admin() as admin:
        admin.request("activate", {"license_key": key})
    page.set_viewport_size({"width": 390, "height": 844})
    logged_in(page, site)
    wait_state(page, "active")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    box = page.locator("#status-card").bounding_box()
    assert box is not None and box["width"] <= 390
    screenshots.take(page, "phone")


def test_keyboard_only(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server"])
    page.goto(site.url)
    page.wait_for_selector("body[data-ready=true]")
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type("admin-secret")
    page.keyboard.press("Enter")
    wait_state(page, "unlicensed")

    def tab_to(element_id, limit=40):
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return
        raise AssertionError(f"#{element_id} is not reachable by Tab")

    tab_to("online-key")
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    wait_state(page, "active")
    tab_to("deactivate")
    page.keyboard.press("Enter")
    page.wait_for_selector("#confirm-dialog[open]")
    assert page.evaluate("document.activeElement.id") == "confirm-cancel"  # the safe choice
    screenshots.take(page, "keyboard-confirm", full_page=False)
    page.keyboard.press("Escape")
    page.wait_for_selector("#confirm-dialog:not([open])", state="attached")
    assert page.get_attribute("#state-badge", "data-state") == "active"


def test_the_page_reconnects_after_a_broker_restart(page, site):
    key = site.vendor.issue(features=["mqtt_server"])
    logged_in(page, site)
    site.broker.restart()  # same MQTT, WebSocket and HTTP ports, same state folder
    page.wait_for_selector("#conn-state.up")
    with site.broker.admin() as admin:
        admin.request("activate", {"license_key": key})
    wait_state(page, "active")  # the retained status arrives over the new connection


def test_alarms_show_on_the_status_and_in_the_events(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server"], max_connections=5)
    logged_in(page, site)
    page.fill("#online-key", key)
    page.click("#online-activate")
    wait_state(page, "active")
    with connected_clients(site.broker.port, 4, prefix="plc-"):  # 80 % of the licensed connections
        page.wait_for_selector("#alarms .alarm[data-code=connection_quota_high]")
        page.wait_for_selector("#events li[data-type=alarm_raised]")
        page.click("#refresh")
        expect(page.locator("#d-connections")).to_contain_text("4 of 5")
        assert "high" in page.get_attribute("#d-connections .fill", "class")
        screenshots.take(page, "alarm")
    page.wait_for_selector("#events li[data-type=alarm_cleared]")
    page.wait_for_selector("#alarms", state="hidden")


def test_event_text_from_clients_is_shown_as_text(page, site):
    """Client ids in events come from anyone who can open a socket: never markup."""
    logged_in(page, site)
    hostile = '<img src=x id=injected onerror="window.pwned=1">'
    with MqttClient(site.broker.port, client_id=hostile, username="admin", password="wrong") as c:
        assert c.connect() == 5
    page.wait_for_selector("#events li[data-type=connection_refused]")
    assert hostile in page.text_content("#events")
    assert page.query_selector("#injected") is None and page.evaluate("window.pwned") is None


def test_screenshot_for_readme(page, site, screenshots):
    """The README's picture: an active online license with clients and a few events."""
    key = site.vendor.issue(
        features=["mqtt_server", "mqtt_server_support"], max_connections=25, support_until=1893456000
    )
    logged_in(page, site)
    page.fill("#online-key", key)
    page.click("#online-activate")
    wait_state(page, "active")
    with connected_clients(site.broker.port, 7, prefix="plc-"):
        page.click("#refresh")
        expect(page.locator("#d-connections")).to_contain_text("7 of 25")
        page.wait_for_selector("#refresh:not([disabled])")
        page.focus("body")
        path = screenshots.take(page, "readme", full_page=False)
    assert Path(path).stat().st_size > 10_000
