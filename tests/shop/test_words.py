"""The right words for each license: how an upgrade reaches the broker per license model, support
in calendar years, "No support" rather than "never", and a 3-D Secure that did not complete said so."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.core.timefmt import add_years
from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from mqtt_licensing.servers.shop.messages import apply_steps, receipt
from mqtt_licensing.servers.shop.store import Order
from tests.shop.conftest import start_shop
from tests.shop.support import ShopServer, card_token, order_form, pay, wait_state
from tests.shop.test_browser import pay_with_card
from tests.shop.test_portal import Clock


def _receipt_body(smtp: SmtpSink) -> str:
    [mail] = smtp.wait(lambda m: m["Subject"].startswith("Receipt"), timeout=30)
    return body_of(mail)


def test_an_offline_license_upgrade_gives_the_offline_steps(
    shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str
) -> None:
    assert shop.service is not None
    lic, key = shop.service.issue_license(features=["mqtt_server"], model="offline")
    order_id = order_form(http, {"mqtt_server_support": 1}, key=key)
    assert pay(http, order_id, card_token(stripe_url)).json()["status"] == "succeeded"
    wait_state(http, order_id, "fulfilled")
    body = _receipt_body(smtp)
    assert "request code" in body and "customer portal" in body and "Reactivate" not in body
    done = http.get(f"/shop/orders/{order_id}").text
    assert "offline-request" in done and "Reactivate" not in done
    assert lic["id"] in done


@pytest.mark.parametrize(
    ("model", "said", "not_said"),
    [
        ("online", "Reactivate", "request code"),
        ("offline", "new request code", "Reactivate"),
        ("floating", "mqtt-licensing floating refresh", "Reactivate"),
    ],
)
def test_each_model_gets_its_own_steps_in_the_receipt(model: str, said: str, not_said: str) -> None:
    order = Order(
        id="ord_1", kind="upgrade", state="fulfilled", email="a@example.com", license_id="lic_1",
        lines=[{"name": "Support", "kind": "per_year", "quantity": 1, "amount": 100}], amount=100, currency="usd",
        stripe_customer=None, stripe_payment_intent=None, stripe_subscription=None, support_until=None,
        pending_key=None, claimed_until=None, attempts=0, last_error=None, created_at=0, paid_at=None,
        fulfilled_at=None,
    )  # fmt: skip
    lic = {"id": "lic_1", "model": model, "features": ["mqtt_server"], "support_until": None}
    _subject, body = receipt(order, lic)
    assert said in body and not_said not in body and apply_steps(model) in body
    assert "Support until: No support" in body  # not "never", which reads as support for ever


def test_a_support_year_is_a_calendar_year_across_a_leap_day(
    tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink
) -> None:
    clock = Clock()
    clock.now = calendar.timegm(datetime(2027, 12, 7, 9, 30, tzinfo=UTC).timetuple())
    server = start_shop(tmp_path, localstripe, smtp, clock=clock)
    try:
        with httpx.Client(base_url=server.url, timeout=20, trust_env=False) as http:
            order_id = order_form(http, {"mqtt_server": 1, "mqtt_server_support": 1})
            pay(http, order_id, card_token(localstripe.url))
            license_id = wait_state(http, order_id, "fulfilled")["license_id"]
        assert server.service is not None
        end = server.service.get_license(license_id)["support_until"]
        assert datetime.fromtimestamp(end, UTC) == datetime(2028, 12, 7, 9, 30, tzinfo=UTC)  # not 2028-12-06
        assert end == add_years(clock.now, 1)
    finally:
        server.stop()


def test_the_upgrade_page_says_no_support(shop: ShopServer, http: httpx.Client) -> None:
    assert shop.service is not None
    _lic, key = shop.service.issue_license(features=["mqtt_server"])
    page = http.post("/shop/upgrade", data={"license_key": key}).text
    assert "No support" in page and "never" not in page


@pytest.mark.timeout(120)
def test_a_failed_3d_secure_says_so_and_keeps_the_pay_form(
    browser_page: Any, shop: ShopServer, http: httpx.Client
) -> None:
    page = browser_page
    order_id = order_form(http, {"mqtt_server": 1})
    page.goto(f"{shop.url}/shop/orders/{order_id}")
    pay_with_card(page, "4000002760003184")
    page.click("text=Fail authentication")  # localstripe's stand-in for the bank's page, refused
    page.wait_for_function("document.getElementById('message').textContent.length > 0")
    assert "authentication did not complete" in page.text_content("#message")
    assert page.is_enabled("#pay")  # the customer can try again
    assert http.get(f"/shop/orders/{order_id}/state").json()["state"] == "pending"
