"""Words after the sale, for people and for each license model: the key e-mail names features by
their titles and dates as dates (no ISO timestamps); the e-mail telling that money changed a license
(a refund here) says how the change reaches the broker in its model's words: an offline broker
has no check-in and no Reactivate. Payments are real (localstripe); the refund event is signed as
Stripe signs it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from mqtt_licensing.servers.shop.messages import day
from tests.shop.conftest import NOWHERE
from tests.shop.stripe_proxy import StripeProxy
from tests.shop.support import WEBHOOK_SECRET, ShopServer, card_token, order_form, pay, run_passes, wait_state
from tests.shop.test_refunds import BRIDGE, _bought, _catalogue, _send, _settled


@pytest.fixture
def shop(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink) -> Iterator[ShopServer]:
    """As in test_refunds: the bridge sold one-time; Stripe's later events sent by the tests, signed."""
    proxy = StripeProxy(localstripe.url)
    server = ShopServer(tmp_path, stripe_url=proxy.url, smtp_port=smtp.port, catalogue=_catalogue()).start()
    localstripe.register_webhook(NOWHERE, WEBHOOK_SECRET)
    yield server
    server.stop()
    proxy.close()


@pytest.fixture
def http(shop: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.url, timeout=20, trust_env=False) as client:
        yield client


ISO_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.mark.timeout(60)
def test_the_key_mail_names_features_and_dates_for_people(
    shop: ShopServer, http: httpx.Client, localstripe: LocalStripe, smtp: SmtpSink
) -> None:
    _order, _intent, license_id = _bought(shop, http, localstripe, {"mqtt_server": 1, "mqtt_server_support": 1})
    assert shop.service is not None
    lic = shop.service.get_license(license_id)
    body = body_of(smtp.wait(lambda m: m["Subject"] == "Your MQTT license key", timeout=20)[0])
    assert "Features:      MQTT Server (mqtt_server), MQTT Server Support (mqtt_server_support)" in body
    assert f"Support until: {day(lic['support_until'])}" in body and re.search(r"\d+ [A-Z][a-z]+ \d{4}", body)
    assert ISO_TIMESTAMP.search(body) is None, body


@pytest.mark.timeout(90)
def test_a_refund_on_an_offline_license_gives_the_offline_words(
    shop: ShopServer, http: httpx.Client, localstripe: LocalStripe, smtp: SmtpSink
) -> None:
    assert shop.service is not None and shop.shop is not None
    lic, key = shop.service.issue_license(model="offline", features=["mqtt_server"])  # sold by staff
    order_id = order_form(http, {"iot_bridge_snowflake": 1}, key=key)  # the bridge, bought in the store
    assert pay(http, order_id, card_token(localstripe.url)).json()["status"] == "succeeded"
    order = shop.shop.orders.get(order_id)
    intent = {"id": order.stripe_payment_intent, "object": "payment_intent", "amount": order.amount, "currency": "usd",
              "metadata": {"order_id": order_id}}  # fmt: skip
    assert _send(http, "evt_paid_offline", "payment_intent.succeeded", intent) == "paid"
    run_passes(shop)
    wait_state(http, order_id, "fulfilled")
    charge = {"id": "ch_off", "object": "charge", "payment_intent": order.stripe_payment_intent, "amount": BRIDGE,
              "amount_refunded": BRIDGE, "refunded": True}  # fmt: skip
    assert _send(http, "evt_refund_offline", "charge.refunded", charge) == "recorded"
    _settled(shop, order_id, 1)
    assert shop.service.get_license(lic["id"])["features"] == ["mqtt_server"]
    [told] = [body_of(m) for m in smtp.wait(lambda m: m["Subject"] == f"License {lic['id']} changed", timeout=20)]
    assert "iot_bridge_snowflake removed" in told
    assert "new request code" in told and "Reactivate" not in told and "check-in" not in told
