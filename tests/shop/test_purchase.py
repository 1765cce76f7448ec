"""Purchase: the store page -> a PaymentIntent on a real Stripe-compatible server -> the
signed webhook -> one license issued through ActivationService -> the key by e-mail."""

from __future__ import annotations

import logging
import re
import threading
import time

import httpx
import pytest

from mqtt_licensing.core.timefmt import add_years
from mqtt_licensing.servers.shop.devtools import SmtpSink, body_of
from tests.shop.support import (
    PRICES,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    ShopServer,
    card_token,
    order_form,
    pay,
    run_passes,
    stripe_client,
    wait_state,
)


def key_from(body: str) -> str:
    return next(line.strip() for line in body.splitlines() if line.startswith("    ") and line.count("-") >= 3)


def test_catalogue_page_lists_the_products(http: httpx.Client) -> None:
    page = http.get("/shop/").text
    for name in ("MQTT Server", "MQTT Server Support", "IoT Bridge for Snowflake"):
        assert name in page
    assert "500.00 USD once" in page and "100.00 USD per year" in page


def test_purchase_issues_one_license_and_mails_the_key_once(
    shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    order_id = order_form(http, {"mqtt_server": 1, "mqtt_server_support": 2})
    response = http.get(f"/shop/orders/{order_id}")
    page = response.text
    assert "700.00 USD" in page and f"{stripe_url}/js.stripe.com/v3/" in page
    # Only our nonce'd script and Stripe.js may run; the nonce is new on every page.
    policy = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)  # type: ignore[union-attr]
    assert f'<script nonce="{nonce}">' in page and "unsafe-inline' " not in policy.split("script-src")[1].split(";")[0]
    assert nonce not in http.get(f"/shop/orders/{order_id}").headers["content-security-policy"]

    r = pay(http, order_id, card_token(stripe_url))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    done = wait_state(http, order_id, "fulfilled")

    [mail] = smtp.wait(lambda m: m["Subject"] == "Your MQTT license key")
    assert mail["To"] == "buyer@example.com"
    key = key_from(body_of(mail))
    attachment = next(mail.iter_attachments())
    assert attachment.get_filename() == "license.txt" and attachment.get_content().strip() == key

    lic = shop.license_by_key(key)
    assert lic.id == done["license_id"]
    assert lic.features == ("mqtt_server", "mqtt_server_support") and lic.model == "online"
    assert abs(lic.support_until - add_years(int(time.time()), 2)) < 120  # calendar years
    # Stripe charged the server-side amount for the order, not anything the page said.
    intent = stripe_client(stripe_url).v1.payment_intents.retrieve(shop.shop.orders.get(order_id).stripe_payment_intent)  # type: ignore[union-attr,arg-type]
    assert (intent.amount, intent.status) == (PRICES["mqtt_server"] + 2 * PRICES["mqtt_server_support"], "succeeded")
    assert "The license key was sent to buyer@example.com" in http.get(f"/shop/orders/{order_id}").text

    # The key left the server once, in the e-mail; nothing secret is in any log line or kept in the order.
    # (aiosmtpd's "mail.log" is the test's SMTP server printing what it received: not ours.)
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))
    assert "order" in logged and "stripe" in logged.lower()  # the capture did see our and Stripe's logging
    for secret in (key, STRIPE_KEY, WEBHOOK_SECRET):
        assert secret not in logged
    assert shop.shop.orders.get(order_id).pending_key is None  # type: ignore[union-attr]
    run_passes(shop)  # a few more passes of the loop
    assert len(smtp.messages) == 1


def test_declined_card_issues_nothing(shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str) -> None:
    order_id = order_form(http, {"mqtt_server": 1})
    r = pay(http, order_id, card_token(stripe_url, "4000000000000002"))
    assert r.status_code == 402 and r.json()["error"]["code"] == "payment_declined"
    assert wait_state(http, order_id, "pending")
    assert shop.service is not None and shop.service.list_licenses() == []
    assert smtp.messages == []


def test_bad_orders_are_refused_with_a_message(http: httpx.Client) -> None:
    r = http.post("/shop/orders", data={"email": "x@example.com"})
    assert r.status_code == 400 and "choose at least one product" in r.text
    r = http.post("/shop/orders", data={"email": "not-an-address", "product": "mqtt_server"})
    assert r.status_code == 400 and "valid e-mail" in r.text
    r = http.post(
        "/shop/orders",
        data={"email": "x@example.com", "product": "mqtt_server_support", "years_mqtt_server_support": "99"},
    )
    assert r.status_code == 400 and "1 to 10 years" in r.text
    r = http.post("/shop/orders", data={"email": "x@example.com", "product": "gold_plating"})
    assert r.status_code == 400 and "no product" in r.text
    assert http.get("/shop/orders/ord_nope").status_code == 404
    r = http.post("/shop/orders/ord_nope/pay", json={"token": "tok_x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_two_clicks_on_pay_charge_once(shop: ShopServer, http: httpx.Client, stripe_url: str) -> None:
    order_id = order_form(http, {"mqtt_server": 1})
    tokens = [card_token(stripe_url), card_token(stripe_url)]
    barrier = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def click(token: str) -> None:
        with httpx.Client(base_url=shop.url, timeout=20, trust_env=False) as c:
            barrier.wait()
            answers.append(pay(c, order_id, token))

    threads = [threading.Thread(target=click, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(a.status_code for a in answers) in ([200, 200], [200, 400])
    wait_state(http, order_id, "fulfilled")
    intents = stripe_client(stripe_url).v1.payment_intents.list(params={"limit": 100})
    charged = [
        pi for pi in intents.data if pi.metadata.to_dict().get("order_id") == order_id and pi.status == "succeeded"
    ]
    assert len(charged) == 1


def test_abandoned_3d_secure_shows_the_pay_form_again(shop: ShopServer, http: httpx.Client, stripe_url: str) -> None:
    order_id = order_form(http, {"mqtt_server": 1})
    first = pay(http, order_id, card_token(stripe_url, "4000002760003184"))  # asks for 3-D Secure
    assert first.json()["status"] == "requires_action"
    page = http.get(f"/shop/orders/{order_id}").text
    assert 'id="pay"' in page  # the customer closed the bank's window: they can try again
    again = pay(http, order_id, card_token(stripe_url, "4000002760003184"))
    assert again.json() == {
        "state": "pending",
        "status": "requires_action",
        "client_secret": first.json()["client_secret"],
    }


class _Clock:
    def __init__(self) -> None:
        self.now = int(time.time())

    def __call__(self) -> int:
        return self.now


def test_old_orders_are_not_paid_or_fulfilled_at_an_old_price(tmp_path, localstripe, smtp) -> None:
    """Main: two orders made at 500.00 USD, the vendor restarted with the price at 1,000.00, the
    old orders paid: fulfilled at 500.00. Now a pending order expires after an hour and is
    refused when a price changed; one paid anyway at the old price is held, not fulfilled."""
    from tests.shop.conftest import start_shop
    from tests.shop.support import catalogue, signed_event

    clock = _Clock()
    shop = start_shop(tmp_path, localstripe, smtp, clock=clock)
    try:
        with httpx.Client(base_url=shop.url, timeout=20, trust_env=False) as http:
            first, second, third = (order_form(http, {"mqtt_server": 1}) for _ in range(3))
            clock.now += 3601
            expired = pay(http, third, card_token(localstripe.url))
            assert expired.status_code == 403 and "expired" in expired.text, expired.text
            clock.now -= 3601
    finally:
        shop.stop()
    dearer = catalogue()
    dearer["products"][0]["price"] = 2 * PRICES["mqtt_server"]
    shop = start_shop(tmp_path, localstripe, smtp, clock=clock, catalogue=dearer)
    try:
        with httpx.Client(base_url=shop.url, timeout=20, trust_env=False) as http:
            refused = pay(http, first, card_token(localstripe.url))
            assert refused.status_code == 403 and "price of MQTT Server changed" in refused.text, refused.text
            # A payment that was under way at the old price and is confirmed now: held.
            intent = {"id": "pi_late", "object": "payment_intent", "amount": PRICES["mqtt_server"], "currency": "usd"}
            intent["metadata"] = {"order_id": second}
            body, signature = signed_event(
                {"id": "evt_late", "type": "payment_intent.succeeded", "data": {"object": intent}}
            )
            answer = http.post("/shop/stripe/webhook", content=body, headers={"Stripe-Signature": signature})
            assert answer.json()["result"] == "held", answer.text
            assert shop.shop is not None and shop.service is not None
            assert shop.shop.orders.fulfil_due() == 0
            assert shop.shop.orders.get(second).state == "held"
            assert "on hold" in http.get(f"/shop/orders/{second}").text
            assert shop.service.list_licenses() == []
            # A new order is priced at today's price and pays as before.
            fresh = order_form(http, {"mqtt_server": 1})
            assert pay(http, fresh, card_token(localstripe.url)).json()["status"] == "succeeded"
            wait_state(http, fresh, "fulfilled")
    finally:
        shop.stop()
