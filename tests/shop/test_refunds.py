"""The license follows the money, line by line: a partial refund of exactly an add-on removes
that feature only, of support years shortens support, of any other amount is flagged; a
subscription cancelled at its period end loses its feature then; a refund from the CLI reaches
Stripe with an idempotency key. Payments are real (localstripe); Stripe's later events are signed
and sent the way Stripe sends them; the refund request is recorded by tests/shop/stripe_proxy.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.cli.main import main
from mqtt_licensing.servers.shop import money
from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from tests.shop.conftest import NOWHERE
from tests.shop.stripe_proxy import StripeProxy
from tests.shop.support import (
    STRIPE_KEY,
    WEBHOOK_SECRET,
    ShopServer,
    card_token,
    catalogue,
    order_form,
    pay,
    run_passes,
    signed_event,
    wait_state,
)
from tests.shop.test_portal import Clock
from tests.shop.test_webhook import deliver, event

BRIDGE = 20000  # the bridge sold as a one-time add-on in these tests


def _catalogue() -> dict[str, Any]:
    data = catalogue()
    for product in data["products"]:
        if product["id"] == "iot_bridge_snowflake":
            product.update(kind="one_time", price=BRIDGE)
            product.pop("unit")
    return data


@pytest.fixture
def proxy(localstripe: LocalStripe) -> Iterator[StripeProxy]:
    server = StripeProxy(localstripe.url)
    yield server
    server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def shop(
    tmp_path: Path, proxy: StripeProxy, localstripe: LocalStripe, smtp: SmtpSink, clock: Clock
) -> Iterator[ShopServer]:
    """Stripe delivers no events here: the tests send them, signed as Stripe signs them."""
    server = ShopServer(tmp_path, stripe_url=proxy.url, smtp_port=smtp.port, clock=clock, catalogue=_catalogue())
    server.start()
    localstripe.register_webhook(NOWHERE, WEBHOOK_SECRET)
    yield server
    server.stop()


@pytest.fixture
def http(shop: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.url, timeout=20, trust_env=False) as client:
        yield client


def _send(http: httpx.Client, event_id: str, kind: str, obj: dict[str, Any]) -> str:
    body, signature = signed_event(event(obj, event_id, kind))
    answer = deliver(http, body, signature)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["result"])


def _bought(
    shop: ShopServer, http: httpx.Client, localstripe: LocalStripe, products: dict[str, int]
) -> tuple[str, str, str]:
    """(order, its PaymentIntent, the license) of a purchase paid and fulfilled."""
    order_id = order_form(http, products)
    assert pay(http, order_id, card_token(localstripe.url)).json()["status"] == "succeeded"
    assert shop.shop is not None
    order = shop.shop.orders.get(order_id)
    assert order.stripe_payment_intent is not None
    intent = {"id": order.stripe_payment_intent, "object": "payment_intent", "amount": order.amount, "currency": "usd",
              "metadata": {"order_id": order_id}}  # fmt: skip
    assert _send(http, "evt_paid", "payment_intent.succeeded", intent) == "paid"
    run_passes(shop)
    return order_id, order.stripe_payment_intent, str(wait_state(http, order_id, "fulfilled")["license_id"])


def _history(shop: ShopServer, order_id: str) -> list[dict[str, Any]]:
    assert shop.shop is not None
    with shop.shop.store.transaction() as tx:
        return money.history(tx.conn, order_id)


def _settled(shop: ShopServer, order_id: str, count: int) -> list[dict[str, Any]]:
    """The order's money events once ``count`` of them are applied (by this test's pass or the
    server's own worker, whichever took each)."""
    deadline = time.monotonic() + 20
    while True:
        run_passes(shop, 1)
        rows = _history(shop, order_id)
        if len([r for r in rows if r["applied_at"] is not None]) >= count:
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


def _changed(smtp: SmtpSink, license_id: str) -> list[str]:
    return [body_of(m) for m in smtp.messages if m["Subject"] == f"License {license_id} changed"]


def test_a_partial_refund_of_the_bridge_removes_only_the_bridge_once(
    shop: ShopServer, http: httpx.Client, localstripe: LocalStripe, smtp: SmtpSink
) -> None:
    order_id, intent, license_id = _bought(shop, http, localstripe, {"mqtt_server": 1, "iot_bridge_snowflake": 1})
    assert shop.service is not None
    assert shop.service.get_license(license_id)["features"] == ["iot_bridge_snowflake", "mqtt_server"]
    charge = {"id": "ch_1", "object": "charge", "payment_intent": intent, "amount": 50000 + BRIDGE,
              "amount_refunded": BRIDGE, "refunded": False}  # fmt: skip
    results = [_send(http, "evt_refund_bridge", "charge.refunded", charge) for _ in range(3)]
    assert results == ["recorded", "duplicate", "duplicate"]
    _settled(shop, order_id, 1)
    lic = shop.service.get_license(license_id)
    assert (lic["features"], lic["status"]) == (["mqtt_server"], "active")
    [told] = [body_of(m) for m in smtp.wait(lambda m: m["Subject"] == f"License {license_id} changed")]
    assert "iot_bridge_snowflake removed: IoT Bridge for Snowflake was refunded" in told
    # A further 12.34 back (a goodwill credit): recorded and flagged, the license as it was, no e-mail.
    more = {**charge, "amount_refunded": BRIDGE + 1234}
    assert _send(http, "evt_refund_goodwill", "charge.refunded", more) == "recorded"
    outcomes = [(r["kind"], r["outcome"]) for r in _settled(shop, order_id, 2)]
    assert shop.service.get_license(license_id)["features"] == ["mqtt_server"]
    assert outcomes[1] == (
        "refund_partial",
        "flagged: 1234 refunded matches no line of the order; the license is unchanged",
    )
    assert len(_changed(smtp, license_id)) == 1


def test_a_refunded_support_year_shortens_support(
    shop: ShopServer, http: httpx.Client, localstripe: LocalStripe
) -> None:
    order_id, intent, license_id = _bought(shop, http, localstripe, {"mqtt_server": 1, "mqtt_server_support": 3})
    assert shop.service is not None
    before = shop.service.get_license(license_id)["support_until"]
    charge = {"payment_intent": intent, "amount": 80000, "amount_refunded": 10000, "refunded": False}
    assert _send(http, "evt_refund_year", "charge.refunded", charge) == "recorded"
    _settled(shop, order_id, 1)
    after = shop.service.get_license(license_id)["support_until"]
    assert 364 * 86400 <= before - after <= 366 * 86400  # one calendar year
    assert _history(shop, order_id)[0]["outcome"].startswith("support shortened by 1 year(s)")


def test_a_subscription_cancelled_at_period_end_loses_the_feature_then(
    shop: ShopServer, http: httpx.Client, localstripe: LocalStripe, smtp: SmtpSink, clock: Clock
) -> None:
    """The bridge as sold by default (metered, with a subscription): its order as the store keeps it."""
    assert shop.service is not None and shop.shop is not None
    lic, key = shop.service.issue_license(features=["mqtt_server", "iot_bridge_snowflake"])
    order_id = order_form(http, {"mqtt_server_support": 1}, key=key)
    bridge = {"product": "iot_bridge_snowflake", "name": "IoT Bridge for Snowflake", "feature": "iot_bridge_snowflake",
              "template": None, "features": ["iot_bridge_snowflake"], "kind": "metered", "price": 5, "quantity": 1,
              "amount": 0, "meter": ""}  # fmt: skip
    with shop.shop.store.transaction() as tx:
        tx.update_order(order_id, stripe_subscription="sub_test_1", lines=[bridge], license_id=lic["id"])
    end = clock.now + 3600
    sub = {"id": "sub_test_1", "object": "subscription", "cancel_at_period_end": True, "current_period_end": end}
    assert _send(http, "evt_cancel", "customer.subscription.updated", sub) == "recorded"
    assert _send(http, "evt_cancel_again", "customer.subscription.updated", sub) == "ignored"  # nothing new
    _settled(shop, order_id, 1)
    assert "iot_bridge_snowflake" in shop.service.get_license(lic["id"])["features"]  # paid until the end
    [told] = [body_of(m) for m in smtp.wait(lambda m: m["Subject"] == f"License {lic['id']} changed")]
    assert "iot_bridge_snowflake will be removed on" in told
    clock.now = end + 1
    _settled(shop, order_id, 2)
    assert shop.service.get_license(lic["id"])["features"] == ["mqtt_server"]
    assert shop.shop.orders.get(order_id).cancel_at is None
    # Stripe's own end of the subscription comes after: recorded, nothing removed twice, no second e-mail.
    assert _send(http, "evt_deleted", "customer.subscription.deleted", {**sub, "status": "canceled"}) == "recorded"
    kinds = sorted((r["kind"], r["outcome"]) for r in _settled(shop, order_id, 3))
    assert kinds[1:] == [
        ("subscription_ended", "iot_bridge_snowflake removed: the subscription ended"),
        ("subscription_ended", "recorded: nothing left to remove"),
    ]
    smtp.wait(lambda m: m["Subject"] == f"License {lic['id']} changed", count=2)  # scheduled, then removed
    assert len(_changed(smtp, lic["id"])) == 2


def test_a_withdrawn_cancellation_keeps_the_feature(
    shop: ShopServer, http: httpx.Client, localstripe: LocalStripe, clock: Clock
) -> None:
    order_id, _intent, license_id = _bought(shop, http, localstripe, {"mqtt_server": 1, "iot_bridge_snowflake": 1})
    assert shop.shop is not None and shop.service is not None
    with shop.shop.store.transaction() as tx:
        tx.update_order(order_id, stripe_subscription="sub_test_2")
    sub = {"id": "sub_test_2", "cancel_at_period_end": True, "current_period_end": clock.now + 60}
    assert _send(http, "evt_c1", "customer.subscription.updated", sub) == "recorded"
    assert _send(http, "evt_c2", "customer.subscription.updated", {**sub, "cancel_at_period_end": False}) == "recorded"
    clock.now += 120
    _settled(shop, order_id, 2)
    run_passes(shop)  # past the end it was scheduled for: nothing happens
    assert shop.service.get_license(license_id)["features"] == ["iot_bridge_snowflake", "mqtt_server"]
    assert [r["kind"] for r in _history(shop, order_id)] == ["cancel_scheduled", "cancel_unscheduled"]


def test_a_refund_from_the_cli_reaches_stripe_with_an_idempotency_key(
    shop: ShopServer,
    http: httpx.Client,
    localstripe: LocalStripe,
    proxy: StripeProxy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    order_id, intent, license_id = _bought(shop, http, localstripe, {"mqtt_server": 1, "iot_bridge_snowflake": 1})
    data, config = str(shop.data_dir), str(shop.config_path)
    capsys.readouterr()
    for _ in range(2):  # asked twice (a retried command): one refund at Stripe
        assert main(["vendor", "order", "--data", data, "refund", "ORD-000001", "--amount", str(BRIDGE),
                     "--shop-config", config]) == 0  # fmt: skip
    out = capsys.readouterr().out
    sent = proxy.posts("/v1/refunds")
    assert [(r["params"]["payment_intent"], r["params"]["amount"], r["idempotency_key"]) for r in sent] == [
        (intent, str(BRIDGE), f"refund-{order_id}-{BRIDGE}")
    ] * 2
    refunds = httpx.get(f"{localstripe.url}/v1/refunds", params={"payment_intent": intent}, auth=(STRIPE_KEY, ""),
                        trust_env=False).json()["data"]  # fmt: skip
    assert [r["amount"] for r in refunds] == [BRIDGE]  # localstripe: one refund
    assert f"of {BRIDGE} USD: succeeded" in out
    # Stripe then sends charge.refunded: the license changes as for any refund.
    charge = {"payment_intent": intent, "amount": 50000 + BRIDGE, "amount_refunded": BRIDGE, "refunded": False}
    assert _send(http, "evt_cli_refund", "charge.refunded", charge) == "recorded"
    _settled(shop, order_id, 1)
    assert shop.service is not None
    assert shop.service.get_license(license_id)["features"] == ["mqtt_server"]
    assert main(["vendor", "order", "--data", data, "show", "ORD-000001", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["card_last4"] == "4242" and shown["money"][0]["outcome"].startswith("iot_bridge_snowflake removed")
    assert main(["vendor", "order", "--data", data, "refund", "ORD-000001"]) == 1  # no --shop-config: no key
