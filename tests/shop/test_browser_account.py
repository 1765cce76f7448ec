"""The portal by account in a real browser (Chromium via Playwright, against localstripe and an
aiosmtpd sink): a customer who bought twice with one address signs in with that address and the
mailed code (no key), sees both licenses, shows a key again (after the question), and frees the
activation of the broker labelled ``line-7`` (after the question). The vendor's record says
``freed_by_customer``, and the broker learns it at its next ``reactivate``: the vendor no longer
knows the activation, and the broker stops serving."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers.shop.devtools import SmtpSink
from tests.helpers.broker import start_broker
from tests.shop.support import ShopServer
from tests.shop.test_accounts import buy
from tests.shop.test_browser import last_mail, pay_with_card

BUYER = "buyer@example.com"
LABEL = "line-7"


@pytest.mark.timeout(180)
def test_portal_by_address_in_the_browser(
    browser_page: Any, shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str, tmp_path: Path
) -> None:
    page = browser_page
    assert shop.service is not None
    vendor = {"vendor_url": shop.url, "vendor_public_key": shop.service.public_key_text}

    # -- two purchases with one address: the first in the page, the second through the same form ---
    page.goto(f"{shop.url}/shop/")
    page.check("#product-mqtt_server")
    page.fill("#email", BUYER)
    page.click("#purchase")
    page.wait_for_selector("#pay")
    pay_with_card(page, "4242424242424242")
    page.wait_for_selector("#state[data-state=fulfilled]", timeout=30_000)
    first_key = re.search(r"^\s+(MQL\S+)\s*$", last_mail(smtp, "Your MQTT license key"), re.M).group(1)  # type: ignore[union-attr]
    second, _order = buy(http, stripe_url, BUYER)

    with start_broker(tmp_path / "line7", instance_label=LABEL, trial_seconds=0, **vendor) as broker:
        with broker.admin() as c:
            status = c.request("activate", {"license_key": first_key})["status"]
        assert status["state"] == "active"
        first = status["license_id"]
        assert first != second

        # -- sign in with the address and the mailed code ------------------------------------------
        page.goto(f"{shop.url}/shop/portal")
        page.fill("#email", BUYER)
        page.click("#send-email-code")
        code = re.search(r"^\s+(\d{8})\s*$", last_mail(smtp, "Your sign-in code"), re.M).group(1)  # type: ignore[union-attr]
        page.fill("#email-code", code)
        page.click("#email-sign-in")
        page.wait_for_selector("#account-email")
        assert page.text_content("#account-email") == BUYER
        for lid in (first, second):
            assert page.query_selector(f'section[data-license="{lid}"]') is not None
        assert page.text_content(f"#activations-{first} .instance-label") == LABEL
        page.click("nav >> text=Customer portal")  # signed in, the portal link leads to the licenses
        page.wait_for_selector("#account-email")

        # -- the key again: the question first (no key on it), then the key ---------------------------
        page.click(f"#show-key-{first}")
        page.wait_for_selector("#confirm-key")
        assert first_key not in page.content()
        page.click("#confirm-key")
        assert page.input_value("#shown-key") == first_key
        page.click("#back")
        assert f"Key shown to {BUYER}" in page.text_content(f'section[data-license="{first}"]')

        # -- free the activation of line-7: the question names the broker, then it is freed ---------
        page.click(f"#activations-{first} button.free")
        page.wait_for_selector("#confirm-free")
        assert page.text_content(".instance-label") == LABEL
        page.click("#confirm-free")
        assert "was freed" in page.text_content("#notice")
        assert "freed_by_customer" in page.text_content(f"#activations-{first}")
        [act] = shop.service.list_activations(first, include_freed=True)
        assert not act["active"] and act["freed_reason"] == "freed_by_customer" and act["label"] == LABEL

        # -- the broker learns it when it next asks the vendor ------------------------------------------
        with broker.admin() as c:
            with pytest.raises(LicensingError) as lost:
                c.request("reactivate")
            assert lost.value.code == ErrorCode.ACTIVATION_NOT_FOUND
        status = broker.status()
        assert status["state"] not in ("active", "grace", "trial") and status["license_id"] is None
