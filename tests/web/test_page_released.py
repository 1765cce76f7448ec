"""The License page of a broker whose activation the vendor released while every other one is
in use: the one status line says so, in a real browser against a real broker and vendor."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.broker import start_broker
from tests.helpers.fakeclock import FakeClock
from tests.web.conftest import log_in, start_site

pytestmark = pytest.mark.timeout(120)


def test_a_released_activation_reads_as_one_line(page: Any, tmp_path: Any, vendor: Any) -> None:
    clock = FakeClock()
    vendor.service.reconfigure(clock=clock.seconds)  # the release duty reads the same clock as the agent
    _lic, key = vendor.service.issue_license(features=["mqtt_server"], heartbeat_interval=10, release_after=30)
    site = start_site(tmp_path, vendor, tick_interval=3600)
    try:
        site.broker.agent.clock = clock
        with site.broker.admin() as admin:
            admin.request("activate", {"license_key": key})
        log_in(page, site)
        page.wait_for_selector("#state-badge[data-state=active]")
        assert "heartbeat every 10 s" in (page.text_content("#details") or "")
        clock.advance(40)  # the broker was paused; the vendor releases it and a replacement takes the seat
        assert len(vendor.service.release_silent()) == 1
        with start_broker(tmp_path / "replacement", vendor=vendor) as other, other.admin() as admin:
            admin.request("activate", {"license_key": key})
        site.broker.call(site.broker.agent.tick())
        page.wait_for_selector("#state-badge[data-state=unlicensed]")
        reason = page.text_content("#state-reason") or ""
        assert "released this activation" in reason and "no activation is free" in reason, reason
        assert "activates again by itself" in reason
    finally:
        site.broker.stop()
