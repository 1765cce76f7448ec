"""The license follows the money: signed Stripe events after the sale (a refund, a dispute, a
subscription that ended) change the license once per event id, are recorded on the order, and
the customer is told. The payments are real (localstripe); the later events are signed and sent
the way Stripe sends them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.core import labels
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers.shop import money
from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from tests.shop.conftest import start_shop
from tests.shop.support import ShopServer, card_token, order_form, pay, signed_event, wait_state
from tests.shop.test_portal import Clock, Instance
from tests.shop.test_webhook import deliver, event, paid_order


@pytest.fixture
def quiet_shop(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink) -> Iterator[ShopServer]:
    """Stripe delivers no events to this server: the test does, signed as Stripe signs them."""
    server = start_shop(tmp_path, localstripe, smtp, webhook=False)
    yield server
    server.stop()


@pytest.fixture
def client(quiet_shop: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=quiet_shop.url, timeout=20, trust_env=False) as c:
        yield c


def _send(client: httpx.Client, event_id: str, kind: str, obj: dict[str, Any]) -> str:
    body, signature = signed_event(event(obj, event_id, kind))
    r = deliver(client, body, signature)
    assert r.status_code == 200, r.text
    return str(r.json()["result"])


def _until(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the worker did not apply the event"
        time.sleep(0.1)


def _fulfilled(client: httpx.Client, shop: ShopServer, stripe_url: str) -> tuple[str, dict[str, Any], str]:
    order_id, intent = paid_order(client, shop, stripe_url)
    assert _send(client, "evt_paid", "payment_intent.succeeded", intent) == "paid"
    return order_id, intent, str(wait_state(client, order_id, "fulfilled")["license_id"])


def _mailed_key(smtp: SmtpSink) -> str:
    [mail] = smtp.wait(lambda m: m["Subject"] == "Your MQTT license key")
    found = re.search(r"^\s+(MQL\S+)\s*$", body_of(mail), re.M)
    assert found
    return found.group(1)


def _history(shop: ShopServer, order_id: str) -> list[dict[str, Any]]:
    assert shop.shop is not None
    with shop.shop.store.transaction() as tx:
        return money.history(tx.conn, order_id)


def test_a_full_refund_suspends_the_license_and_tells_the_customer(
    quiet_shop: ShopServer, client: httpx.Client, smtp: SmtpSink, stripe_url: str
) -> None:
    order_id, intent, license_id = _fulfilled(client, quiet_shop, stripe_url)
    assert quiet_shop.service is not None
    key = _mailed_key(smtp)
    broker = Instance(Clock())
    activation_id = broker.activate(quiet_shop.service, key)  # a broker running on the license
    charge = {"id": "ch_1", "object": "charge", "payment_intent": intent["id"], "amount": intent["amount"],
              "amount_refunded": intent["amount"], "refunded": True}  # fmt: skip
    assert _send(client, "evt_refund", "charge.refunded", charge) == "recorded"
    assert quiet_shop.service is not None
    _until(lambda: quiet_shop.service.get_license(license_id)["status"] == "suspended")
    [mail] = smtp.wait(lambda m: m["Subject"] == f"License {license_id} changed")
    assert "suspended: the payment was refunded" in mail.get_content()
    with pytest.raises(LicensingError) as refused:  # what the broker hears at its next check-in
        quiet_shop.service.check_in(broker.request(labels.KIND_CHECK_IN, activation_id=activation_id))
    assert refused.value.code == ErrorCode.SUSPENDED
    [row] = _history(quiet_shop, order_id)
    assert (row["kind"], row["amount"], row["outcome"]) == (
        "refund_full",
        intent["amount"],
        "suspended: the payment was refunded",
    )


def test_a_partial_refund_is_recorded_and_changes_nothing(
    quiet_shop: ShopServer, client: httpx.Client, stripe_url: str
) -> None:
    order_id, intent, license_id = _fulfilled(client, quiet_shop, stripe_url)
    charge = {"id": "ch_1", "payment_intent": intent["id"], "amount": intent["amount"], "amount_refunded": 1000,
              "refunded": False}  # fmt: skip
    assert _send(client, "evt_partial", "charge.refunded", charge) == "recorded"
    _until(lambda: _history(quiet_shop, order_id)[0]["applied_at"] is not None)
    assert quiet_shop.service is not None
    assert quiet_shop.service.get_license(license_id)["status"] == "active"
    assert _history(quiet_shop, order_id)[0]["kind"] == "refund_partial"


def test_a_lost_dispute_revokes_once_however_often_it_arrives(
    quiet_shop: ShopServer, client: httpx.Client, smtp: SmtpSink, stripe_url: str
) -> None:
    order_id, intent, license_id = _fulfilled(client, quiet_shop, stripe_url)
    dispute = {"id": "dp_1", "object": "dispute", "payment_intent": intent["id"], "amount": intent["amount"]}
    assert _send(client, "evt_dispute", "charge.dispute.created", dispute) == "recorded"
    closed = {**dispute, "status": "lost"}
    results = [_send(client, "evt_lost", "charge.dispute.closed", closed) for _ in range(3)]
    assert results == ["recorded", "duplicate", "duplicate"]
    assert quiet_shop.service is not None
    _until(lambda: quiet_shop.service.get_license(license_id)["status"] == "revoked")
    _until(lambda: all(r["applied_at"] for r in _history(quiet_shop, order_id)))
    assert [r["kind"] for r in _history(quiet_shop, order_id)] == ["dispute_opened", "dispute_lost"]
    time.sleep(0.5)  # a second e-mail would be sent within a worker pass (0.2 s)
    assert len([m for m in smtp.messages if m["Subject"] == f"License {license_id} changed"]) == 1


def test_a_cancelled_subscription_removes_the_metered_feature_at_its_end(
    quiet_shop: ShopServer, client: httpx.Client, stripe_url: str
) -> None:
    assert quiet_shop.service is not None and quiet_shop.shop is not None
    lic, key = quiet_shop.service.issue_license(features=["mqtt_server"])
    order_id = order_form(client, {"iot_bridge_snowflake": 1}, key=key)
    assert pay(client, order_id, card_token(stripe_url)).json()["state"] == "paid"
    wait_state(client, order_id, "fulfilled")
    assert "iot_bridge_snowflake" in quiet_shop.service.get_license(lic["id"])["features"]
    sub = quiet_shop.shop.orders.get(order_id).stripe_subscription
    assert sub is not None
    ended = {"id": sub, "object": "subscription", "status": "canceled"}
    assert _send(client, "evt_sub_end", "customer.subscription.deleted", ended) == "recorded"
    _until(lambda: quiet_shop.service.get_license(lic["id"])["features"] == ["mqtt_server"])
    assert _history(quiet_shop, order_id)[0]["outcome"] == "iot_bridge_snowflake removed: the subscription ended"
    assert _send(client, "evt_other", "charge.refunded", {"payment_intent": "pi_not_ours"}) == "ignored"


def test_vendor_orders_lists_the_orders_and_vendor_order_shows_what_the_money_did(
    quiet_shop: ShopServer, client: httpx.Client, stripe_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mqtt_licensing.cli.main import main

    order_id, intent, license_id = _fulfilled(client, quiet_shop, stripe_url)
    charge = {"payment_intent": intent["id"], "amount": intent["amount"], "amount_refunded": intent["amount"]}
    assert _send(client, "evt_refund", "charge.refunded", charge) == "recorded"
    _until(lambda: _history(quiet_shop, order_id)[0]["applied_at"] is not None)
    data = str(quiet_shop.data_dir)
    capsys.readouterr()
    assert main(["vendor", "orders", "--data", data, "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["number"], listed["state"], listed["license_id"]) == (
        order_id, "ORD-000001", "fulfilled", license_id
    )  # fmt: skip
    assert main(["vendor", "order", "--data", data, "ORD-000001"]) == 0
    shown = capsys.readouterr().out
    assert order_id in shown and "refund_full" in shown and "suspended: the payment was refunded" in shown
    assert main(["vendor", "order", "--data", data, "ORD-000009"]) == 1
    assert "no order 'ORD-000009'" in capsys.readouterr().err
