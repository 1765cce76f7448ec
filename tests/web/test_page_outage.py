"""The License page when the broker or the vendor goes away, and when the vendor suspends.

Main: a Refresh during a broker outage left every button on "Refreshing…" for 61 s while the
card showed a full-colour ACTIVE, "Updated just now"; a failing check-in read
"failing since just now: [object Object]" and its alarm gave raw ISO times; a red
"Last failure" stayed after the vendor was back; after `vendor suspend` the Manage card
disappeared ("Model none"), so nothing on the page could pick up a `vendor reinstate`."""

from __future__ import annotations

import re

import pytest

from tests.web.conftest import start_site

expect = pytest.importorskip("playwright.sync_api").expect
pytestmark = pytest.mark.timeout(120)

RAW_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def logged_in(page, site):
    page.goto(site.url)
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#username", "admin")
    page.fill("#password", "admin-secret")
    page.click("#login-button")
    page.wait_for_selector("#state-badge[data-state]")


def activated(site, **terms):
    key = site.vendor.issue(features=["mqtt_server"], **terms)
    with site.broker.admin() as admin:
        admin.request("activate", {"license_key": key})
    return site.vendor.license_id(key)


def test_a_broker_outage_shows_as_such_and_a_refresh_recovers(page, tmp_path, vendor, screenshots):
    site = start_site(tmp_path, vendor)
    try:
        activated(site)
        logged_in(page, site)
        page.wait_for_selector("#state-badge[data-state=active]")
        site.broker.stop()
        page.evaluate("document.getElementById('refresh').click()")  # may race the page noticing
        page.wait_for_selector("#conn-state.down")
        page.wait_for_selector("#status-card.stale")
        assert "stale" in page.get_attribute("#state-badge", "class")
        assert "Not connected to the broker" in page.text_content("#updated")
        assert "Updated" not in page.text_content("#updated")
        assert page.is_disabled("#refresh") and page.is_disabled("#reactivate")
        screenshots.take(page, "broker-away")
        site.broker.start()  # same ports, same state folder
        page.wait_for_selector("#conn-state.up")
        page.wait_for_selector("#refresh:not([disabled])")  # main: 61 s on "Refreshing…"
        page.wait_for_selector("#status-card:not(.stale)")
        assert page.is_hidden("#actions-progress")
        assert page.text_content("#updated").startswith("Updated")
        page.click("#refresh")
        page.wait_for_selector("#refresh:not([disabled])")
        assert page.is_hidden("#actions-error")
        # Reconnect attempts while the broker was away are logged by Chromium itself: provoked here.
        page.console_errors[:] = [e for e in page.console_errors if "ERR_CONNECTION_REFUSED" not in e]
    finally:
        site.broker.stop()


def test_a_vendor_outage_reads_plainly_and_the_failure_greys_once_over(page, tmp_path, vendor, screenshots):
    site = start_site(tmp_path, vendor, check_in_interval=1, retry_interval=0.5)
    try:
        activated(site)
        logged_in(page, site)
        page.wait_for_selector("#state-badge[data-state=active]")
        vendor.stop()
        page.wait_for_selector("#state-badge[data-state=grace]")
        check_in = page.text_content("#d-check-in")
        assert "[object Object]" not in check_in and "failing since" in check_in
        assert re.search(r"failing since \d{4}-\d\d-\d\d \d\d:\d\d UTC .*\(\w+\)", check_in), check_in
        alarm = page.locator("#alarms .alarm[data-code=check_in_failing]")
        expect(alarm).to_contain_text("has not answered since")
        assert not RAW_ISO.search(alarm.text_content()), alarm.text_content()
        page.click("#reactivate")
        page.wait_for_selector("#actions-error:not([hidden])")
        page.wait_for_selector("#d-last-failure .health.bad")
        screenshots.take(page, "vendor-away")
        vendor.start()  # the same port, the same data
        page.wait_for_selector("#state-badge[data-state=active]")
        page.wait_for_selector("#d-last-failure .health.past")  # main: still red
        assert "a check-in succeeded" in page.text_content("#d-last-failure")
        screenshots.take(page, "vendor-back")
    finally:
        site.broker.stop()


def test_a_suspended_license_keeps_its_manage_card_and_recovers(page, tmp_path, vendor, screenshots):
    site = start_site(tmp_path, vendor, check_in_interval=1, retry_interval=0.5)
    try:
        license_id = activated(site)
        logged_in(page, site)
        page.wait_for_selector("#d-valid")
        vendor.service.set_status(license_id, "suspended")
        page.wait_for_selector("#state-badge[data-state=suspended]")
        assert page.text_content("#d-model") == "online"  # main: "none"
        page.wait_for_selector("#actions:not([hidden])")  # main: the Manage card was gone
        assert page.is_visible("#reactivate")
        assert page.query_selector("#d-valid") is None  # no "Valid until … in 6 days" next to a suspension
        screenshots.take(page, "suspended")
        vendor.service.set_status(license_id, "active")  # vendor reinstate
        page.click("#reactivate")
        page.wait_for_selector("#state-badge[data-state=active]")
        page.wait_for_selector("#d-valid")
        assert page.is_hidden("#actions-error")
    finally:
        site.broker.stop()
