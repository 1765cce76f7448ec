"""The webhook's defences: only a correctly signed, fresh event changes anything; the same
event applied once however often it comes; a lost event still ends in fulfilment."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink
from mqtt_licensing.servers.shop.schema import webhook_events
from tests.shop.conftest import start_shop
from tests.shop.support import (
    STRIPE_KEY,
    ShopServer,
    card_token,
    order_form,
    pay,
    run_passes,
    signed_event,
    stripe_client,
    wait_state,
)


@pytest.fixture
def quiet_shop(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink) -> Iterator[ShopServer]:
    """Stripe delivers no events to this server: the test does, by hand."""
    server = start_shop(tmp_path, localstripe, smtp, webhook=False)
    yield server
    server.stop()


@pytest.fixture
def client(quiet_shop: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=quiet_shop.url, timeout=20, trust_env=False) as c:
        yield c


def paid_order(client: httpx.Client, shop: ShopServer, stripe_url: str) -> tuple[str, dict[str, Any]]:
    """An order whose payment Stripe has taken, and the PaymentIntent as Stripe shows it."""
    order_id = order_form(client, {"mqtt_server": 1})
    assert pay(client, order_id, card_token(stripe_url)).json()["status"] == "succeeded"
    assert shop.shop is not None
    intent_id = shop.shop.orders.get(order_id).stripe_payment_intent
    intent = httpx.get(f"{stripe_url}/v1/payment_intents/{intent_id}", auth=(STRIPE_KEY, ""), trust_env=False).json()
    return order_id, intent


def event(intent: dict[str, Any], event_id: str = "evt_1", kind: str = "payment_intent.succeeded") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": kind, "created": int(time.time()), "data": {"object": intent}}


def deliver(client: httpx.Client, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/shop/stripe/webhook", content=body, headers=headers)


def licenses(shop: ShopServer) -> list[dict[str, Any]]:
    assert shop.service is not None
    return shop.service.list_licenses()


def recorded_events(shop: ShopServer) -> int:
    assert shop.shop is not None
    with shop.shop.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(webhook_events)).scalar_one())


def test_wrong_or_stale_signature_gets_400_and_changes_nothing(
    quiet_shop: ShopServer, client: httpx.Client, stripe_url: str, smtp: SmtpSink
) -> None:
    order_id, intent = paid_order(client, quiet_shop, stripe_url)
    body, good = signed_event(event(intent))
    _, wrong_secret = signed_event(event(intent), secret="whsec_someone_else")
    _, stale = signed_event(event(intent), at=int(time.time()) - 3600)
    tampered = body.replace(b'"amount": 50000', b'"amount": 1')
    assert tampered != body
    for sent, signature in ((body, wrong_secret), (body, stale), (body, None), (tampered, good), (body, "t=1,v1=00")):
        r = deliver(client, sent, signature)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_signature"
    run_passes(quiet_shop)
    assert wait_state(client, order_id, "pending")
    assert licenses(quiet_shop) == [] and smtp.messages == [] and recorded_events(quiet_shop) == 0

    # The genuine event, signed with the endpoint's secret, is what makes it paid.
    r = deliver(client, body, good)
    assert r.status_code == 200 and r.json()["result"] == "paid"
    wait_state(client, order_id, "fulfilled")
    assert len(licenses(quiet_shop)) == 1


def test_the_same_event_three_times_issues_one_license(
    quiet_shop: ShopServer, client: httpx.Client, stripe_url: str, smtp: SmtpSink
) -> None:
    order_id, intent = paid_order(client, quiet_shop, stripe_url)
    body, signature = signed_event(event(intent, "evt_redelivered"))
    results: list[str] = []
    barrier = threading.Barrier(3)

    def send() -> None:
        with httpx.Client(base_url=quiet_shop.url, timeout=20, trust_env=False) as c:
            barrier.wait()
            r = deliver(c, body, signature)
            assert r.status_code == 200
            results.append(r.json()["result"])

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["duplicate", "duplicate", "paid"]
    wait_state(client, order_id, "fulfilled")
    # A different event for the same payment (Stripe may send one) finds the order already paid.
    body2, signature2 = signed_event(event(intent, "evt_other"))
    assert deliver(client, body2, signature2).json()["result"] == "already paid"
    run_passes(quiet_shop)
    assert len(licenses(quiet_shop)) == 1
    assert len(smtp.messages) == 1
    assert recorded_events(quiet_shop) == 2


def test_an_event_naming_another_order_or_amount_is_not_taken(
    quiet_shop: ShopServer, client: httpx.Client, stripe_url: str
) -> None:
    order_a, intent_a = paid_order(client, quiet_shop, stripe_url)
    order_b = order_form(client, {"mqtt_server": 1})
    # Correctly signed (as if Stripe sent it) but its payment belongs to order A, its metadata names B.
    moved = {**intent_a, "metadata": {"order_id": order_b}}
    body, signature = signed_event(event(moved, "evt_moved"))
    assert deliver(client, body, signature).json()["result"] == "ignored"
    # The right order but not the amount it costs.
    cheap = {**intent_a, "amount": 100}
    body, signature = signed_event(event(cheap, "evt_cheap"))
    assert deliver(client, body, signature).json()["result"] == "mismatch"
    run_passes(quiet_shop)
    assert wait_state(client, order_a, "pending") and wait_state(client, order_b, "pending")
    assert licenses(quiet_shop) == []


def test_a_lost_webhook_is_made_good_by_asking_stripe(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink) -> None:
    server = start_shop(tmp_path, localstripe, smtp, webhook=False, reconcile_after=1)
    try:
        with httpx.Client(base_url=server.url, timeout=20, trust_env=False) as c:
            order_id = order_form(c, {"mqtt_server": 1})
            assert pay(c, order_id, card_token(localstripe.url)).json()["status"] == "succeeded"
            wait_state(c, order_id, "fulfilled")
        smtp.wait(lambda m: m["Subject"] == "Your MQTT license key")
        assert len(licenses(server)) == 1
    finally:
        server.stop()


def test_an_event_that_overtakes_our_record_of_the_charge_is_applied(
    quiet_shop: ShopServer, client: httpx.Client, stripe_url: str
) -> None:
    """Stripe's event can arrive before the server has written the PaymentIntent id down."""
    order_id = order_form(client, {"mqtt_server": 1})
    stripe = stripe_client(stripe_url)
    customer = stripe.v1.customers.create(params={"email": "buyer@example.com"})
    card = stripe.v1.customers.payment_sources.create(customer.id, params={"source": card_token(stripe_url)})
    intent = stripe.v1.payment_intents.create(
        params={"amount": 50000, "currency": "usd", "customer": customer.id, "payment_method": card.id,
                "confirm": True, "metadata": {"order_id": order_id}}
    )  # fmt: skip
    raw = httpx.get(f"{stripe_url}/v1/payment_intents/{intent.id}", auth=(STRIPE_KEY, ""), trust_env=False).json()
    body, signature = signed_event(event(raw, "evt_early"))
    assert deliver(client, body, signature).json()["result"] == "paid"
    wait_state(client, order_id, "fulfilled")
    assert quiet_shop.shop is not None and quiet_shop.shop.orders.get(order_id).stripe_payment_intent == intent.id
