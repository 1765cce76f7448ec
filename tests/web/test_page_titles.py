"""The License page names features by the titles the license's signed definitions carry: a
product line the broker's code never heard of reads as the vendor wrote it."""

from __future__ import annotations

import pytest

from tests.web.conftest import log_in, start_site

pytestmark = pytest.mark.timeout(120)


def test_the_page_shows_the_vendors_titles_and_never_a_green_active_that_serves_no_one(page, tmp_path, vendor):
    catalogue = vendor.service.catalogue
    catalogue.add_feature(name="sparkplug_b", title="Sparkplug B Module", kind="perpetual", gates="class")
    catalogue.add_feature(
        name="iot_bridge_kafka", title="IoT Bridge for Kafka", kind="metered", unit="messages", gates="class"
    )
    catalogue.add_feature(name="ha_option", title="High Availability", kind="term")
    key = vendor.issue(features=["mqtt_server", "sparkplug_b", "iot_bridge_kafka"])
    support_only = vendor.issue(features=["ha_option"])
    site = start_site(tmp_path, vendor)
    try:
        with site.broker.admin() as admin:
            admin.request("activate", {"license_key": key})
        log_in(page, site)
        page.wait_for_selector("#state-badge[data-state=active]")
        chips = page.locator("[data-feature]")
        page.wait_for_selector("[data-feature=sparkplug_b]")
        titles = {chips.nth(i).get_attribute("data-feature"): chips.nth(i).text_content() for i in range(chips.count())}
        assert titles["sparkplug_b"] == "Sparkplug B Module"
        assert titles["iot_bridge_kafka"] == "IoT Bridge for Kafka"
        assert "bad" not in (page.get_attribute("#state-badge", "class") or "").split()

        with site.broker.admin() as admin:
            admin.request("deactivate", {})
            admin.request("activate", {"license_key": support_only})
        page.wait_for_selector("#state-badge.bad[data-state=active]")
        assert "serves no client" in (page.text_content("#state-badge") or "")
        page.wait_for_selector("#alarms .alarm[data-code=no_serving_feature]")
    finally:
        site.broker.stop()
