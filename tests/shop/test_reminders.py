"""A reminder 30 days before support ends, once per end date, to the purchase address."""

from __future__ import annotations

from pathlib import Path

from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from tests.shop.conftest import start_shop
from tests.shop.support import run_passes
from tests.shop.test_portal import Clock

SUPPORTED = ["mqtt_server", "mqtt_server_support"]


def test_support_reminder_once_per_end_date(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink) -> None:
    clock = Clock()
    server = start_shop(tmp_path, localstripe, smtp, webhook=False, clock=clock)
    try:
        assert server.service is not None and server.shop is not None
        soon, key = server.service.issue_license(features=SUPPORTED, support_until=clock.now + 10 * 86400)
        later, _ = server.service.issue_license(features=SUPPORTED, support_until=clock.now + 40 * 86400)
        unsold, _ = server.service.issue_license(features=SUPPORTED, support_until=clock.now + 5 * 86400)
        server.shop.portal.set_contact(soon["id"], "soon@example.com")
        server.shop.portal.set_contact(later["id"], "later@example.com")

        [mail] = smtp.wait(lambda m: "ends soon" in m["Subject"])
        assert mail["To"] == "soon@example.com" and f"/shop/upgrade?license={soon['id']}" in body_of(mail)
        assert key not in body_of(mail)
        run_passes(server)  # more passes of the loop: still one reminder, none for the others yet
        assert [m["To"] for m in smtp.messages] == ["soon@example.com"]

        clock.now += 15 * 86400  # `later` now ends in 25 days
        smtp.wait(lambda m: m["To"] == "later@example.com")
        # A renewal moves the end date: the new end gets its own reminder when it comes near.
        server.service.update_license(soon["id"], {"support_until": clock.now + 20 * 86400})
        smtp.wait(lambda m: m["To"] == "soon@example.com", count=2)
        run_passes(server)
        assert len(smtp.messages) == 3 and unsold["id"] not in "".join(body_of(m) for m in smtp.messages)
    finally:
        server.stop()
