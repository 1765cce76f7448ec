"""The whole customer journey in a real browser (Chromium via Playwright, Stripe.js served
by localstripe): buy a license, read the e-mail, activate a broker with the key; upgrade with
the Snowflake bridge (3-D Secure card) and see it after `reactivate`; lose the broker, free
its activation in the portal (the broker's label, a ``<script>`` here, shown as text), activate a
second broker."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers.shop.devtools import SmtpSink, body_of
from tests.helpers.broker import start_broker
from tests.shop.support import ShopServer

HOSTILE_LABEL = "<script>alert(1)</script>"


def pay_with_card(page: Any, number: str) -> None:
    """Type a card into the (localstripe) card element and pay."""
    for field, value in (
        ("number", number),
        ("exp_month", "12"),
        ("exp_year", "34"),
        ("cvc", "123"),
        ("postal_code", "10115"),
    ):
        page.fill(f"#card input[placeholder={field}]", value)
    page.click("#pay")


def last_mail(smtp: SmtpSink, subject: str, count: int = 1) -> str:
    return body_of(smtp.wait(lambda m: m["Subject"].startswith(subject), timeout=30, count=count)[-1])


@pytest.mark.timeout(180)
def test_buy_activate_upgrade_and_free_in_the_browser(
    browser_page: Any, shop: ShopServer, smtp: SmtpSink, tmp_path: Path
) -> None:
    page = browser_page
    blocked: list[str] = []  # what the Content-Security-Policy refused, if anything
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
    dialogs: list[str] = []  # an alert() would mean a label ran as markup
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    assert shop.service is not None
    vendor = {"vendor_url": shop.url, "vendor_public_key": shop.service.public_key_text}

    # -- buy: MQTT Server + 1 year of support ---------------------------------------------
    page.goto(f"{shop.url}/shop/")
    page.check("#product-mqtt_server")
    page.check("#product-mqtt_server_support")
    page.fill("#email", "buyer@example.com")
    page.click("#purchase")
    page.wait_for_selector("#pay")
    assert "600.00 USD" in page.text_content("#total")
    pay_with_card(page, "4242424242424242")
    page.wait_for_selector("#state[data-state=fulfilled]", timeout=30_000)
    key = re.search(r"^\s+(MQL\S+)\s*$", last_mail(smtp, "Your MQTT license key"), re.M).group(1)  # type: ignore[union-attr]

    with start_broker(tmp_path / "broker1", instance_label=HOSTILE_LABEL, **vendor) as broker:
        with broker.admin() as c:
            status = c.request("activate", {"license_key": key})["status"]
        assert status["state"] == "active" and "iot_bridge_snowflake" not in status["features"]
        license_id = status["license_id"]

        # -- upgrade from the broker's link, with a card that asks for 3-D Secure ------------
        page.goto(f"{shop.url}/shop/upgrade?license={license_id}")
        assert page.text_content("#license-id") == license_id
        page.fill("#license-key", key)
        page.click("#continue")
        assert page.query_selector("#product-mqtt_server") is None  # already owned: not offered
        page.check("#product-iot_bridge_snowflake")
        page.check("#product-mqtt_server_support")
        page.fill("#email", "buyer@example.com")
        page.click("#purchase")
        page.wait_for_selector("#pay")
        pay_with_card(page, "4000002760003184")
        page.click("text=Complete authentication")  # localstripe's stand-in for the bank's 3-D Secure page
        page.wait_for_selector("#state[data-state=fulfilled]", timeout=30_000)
        assert "iot_bridge_snowflake" in last_mail(smtp, "Receipt")
        with broker.admin() as c:
            status = c.request("reactivate")["status"]
        assert "iot_bridge_snowflake" in status["features"]
    # broker1 is gone now, without deactivating: its activation is lost.

    with start_broker(tmp_path / "broker2", **vendor) as broker2:
        with broker2.admin() as c:
            with pytest.raises(LicensingError) as refused:
                c.request("activate", {"license_key": key})
        assert refused.value.code == ErrorCode.NO_ACTIVATIONS_LEFT

        # -- the portal: sign in with key + mailed code, free the lost activation ------------
        page.goto(f"{shop.url}/shop/portal")
        page.fill("#license-key", key)
        page.click("#send-code")
        code = re.search(r"^\s+(\d{8})\s*$", last_mail(smtp, "Your sign-in code"), re.M).group(1)  # type: ignore[union-attr]
        page.fill("#code", code)
        page.click("#sign-in")
        assert "iot_bridge_snowflake" in page.text_content("#features")
        # The customer frees the broker by its name; the name the broker chose is text, never markup.
        assert page.text_content("#activations .instance-label") == HOSTILE_LABEL
        assert page.query_selector("#activations script") is None
        page.click("#activations button.free")
        assert page.text_content(".instance-label") == HOSTILE_LABEL and page.query_selector("main script") is None
        page.click("#confirm-free")  # the question first: is that broker gone?
        assert "was freed" in page.text_content("#notice")

        with broker2.admin() as c:
            status = c.request("activate", {"license_key": key})["status"]
        assert status["state"] == "active" and "iot_bridge_snowflake" in status["features"]
    assert blocked == [] and dialogs == []
