"""What the License page says, in a real browser against a real broker.

Main: "in 1 hour" with 1 h 59 min left; "(within 1 days)" and raw ISO times in alarms;
Deactivate said "stops serving" when the broker would fall back to its trial; no broker
name anywhere; "admin (admin)". A broker label holding markup shows as text."""

from __future__ import annotations

import re
import time

import pytest

from tests.web.conftest import log_in, start_site

pytestmark = pytest.mark.timeout(120)

HOSTILE_LABEL = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_relative_times_are_not_rounded_up(page, site):
    page.goto(site.url)
    page.wait_for_selector("body[data-ready=true]")
    offsets = {
        "1h59m": 7140,
        "1h": 3600,
        "90s": 90,
        "1d23h": 86400 + 23 * 3600,
        "6d": 6 * 86400 + 1800,
        "45d": 45 * 86400,
        "-2h5m": -(2 * 3600 + 300),
    }
    got = page.evaluate(
        """async (offsets) => {
            const m = await import('/dom.js');
            const out = {};
            // half a second of slack each way: the call happens a moment after "now"
            for (const [name, s] of Object.entries(offsets)) {
                out[name] = m.relative(new Date(Date.now() + s * 1000 + (s >= 0 ? 500 : -500)).toISOString());
            }
            return out;
        }""",
        offsets,
    )
    assert got == {
        "1h59m": "in 1 h 59 min",
        "1h": "in 1 h",
        "90s": "in 1 min",
        "1d23h": "in 1 day 23 h",
        "6d": "in 6 days",
        "45d": "in 45 days",
        "-2h5m": "2 h 5 min ago",
    }


def test_alarm_deactivate_and_header_texts(page, tmp_path, vendor, screenshots):
    site = start_site(tmp_path, vendor, trial_seconds=3600, instance_label=HOSTILE_LABEL)
    try:
        key = vendor.issue(features=["mqtt_server"], expires_at=int(time.time()) + 20 * 3600)
        with site.broker.admin() as admin:
            fingerprint = admin.request("activate", {"license_key": key})["status"]["instance"]["fingerprint"]
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        log_in(page, site)
        page.wait_for_selector("#state-badge[data-state=active]")
        assert page.text_content("#who") == "admin"  # not "admin (admin)"
        name = page.text_content("#broker-name")
        assert f"127.0.0.1:{site.http_port}" in name and fingerprint[:8] in name
        # The broker's label is its config's text: shown as text in the header, the title and the
        # details, never parsed as markup (an alert() would open a dialog).
        assert name.startswith(HOSTILE_LABEL) and HOSTILE_LABEL in page.title()
        page.wait_for_selector("#d-instance .instance-label")
        assert page.text_content("#d-instance .instance-label") == HOSTILE_LABEL
        assert page.query_selector("#broker-name script, #details script, #broker-name img") is None
        assert dialogs == []
        alarm = page.text_content("#alarms .alarm[data-code=license_expiring]")
        assert "(within 1 day)" in alarm and "days" not in alarm
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d", alarm) and "UTC" in alarm
        raised = page.text_content("#events li[data-type=alarm_raised]")
        assert "UTC" in raised and not re.search(r"\d{4}-\d\d-\d\dT\d\d", raised)
        page.click("#deactivate")
        page.wait_for_selector("#confirm-dialog[open]")
        text = page.text_content("#confirm-text")
        assert "falls back to its evaluation period" in text, text  # the trial has an hour left
        screenshots.take(page, "deactivate-to-trial", full_page=False)
        page.click("#confirm-cancel")
    finally:
        site.broker.stop()
