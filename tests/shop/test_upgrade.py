"""Upgrade and support renewal: reached with the license key (or from the broker's License
page with the license preselected); offers only what the license lacks plus support years;
applied with ActivationService.update_license, the method `vendor update` uses."""

from __future__ import annotations

import time

import httpx

from mqtt_licensing.core.timefmt import add_years
from mqtt_licensing.servers.shop.devtools import SmtpSink, body_of
from tests.shop.support import ShopServer, card_token, order_form, pay, signed_event, stripe_client, wait_state


def issue(shop: ShopServer, features: list[str], support_until: int | None) -> tuple[str, str]:
    assert shop.service is not None
    lic, key = shop.service.issue_license(features=features, support_until=support_until)
    return lic["id"], key


def test_upgrade_offers_only_what_the_license_lacks(shop: ShopServer, http: httpx.Client) -> None:
    license_id, key = issue(shop, ["mqtt_server"], None)
    page = http.get("/shop/upgrade", params={"license": license_id}).text
    assert license_id in page and 'name="license_key"' in page
    page = http.post("/shop/upgrade", data={"license": license_id, "license_key": key}).text
    assert 'id="product-mqtt_server_support"' in page and 'id="product-iot_bridge_snowflake"' in page
    assert 'id="product-mqtt_server"' not in page
    # A key of another license than the one preselected; a typo; an unknown key.
    _other_id, other_key = issue(shop, ["mqtt_server"], None)
    r = http.post("/shop/upgrade", data={"license": license_id, "license_key": other_key})
    assert r.status_code == 400 and "another license" in r.text
    r = http.post("/shop/upgrade", data={"license_key": key[:-1] + ("A" if key[-1] != "A" else "B")})
    assert r.status_code == 400 and 'data-code="invalid_key"' in r.text
    # Buying what the license has is refused even when the form is forged.
    r = http.post("/shop/orders", data={"email": "a@example.com", "product": "mqtt_server", "license_key": key})
    assert r.status_code == 400 and "already has MQTT Server" in r.text


def test_upgrade_adds_the_bridge_with_a_metered_subscription_and_extends_support(
    shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str
) -> None:
    current_end = int(time.time()) + 100 * 86400
    license_id, key = issue(shop, ["mqtt_server", "mqtt_server_support"], current_end)
    order_id = order_form(http, {"iot_bridge_snowflake": 1, "mqtt_server_support": 2}, email="ops@example.com", key=key)
    assert pay(http, order_id, card_token(stripe_url)).json()["status"] == "succeeded"
    assert wait_state(http, order_id, "fulfilled")["license_id"] == license_id
    assert shop.service is not None and shop.shop is not None
    lic = shop.service.get_license(license_id)
    assert lic["features"] == ["iot_bridge_snowflake", "mqtt_server", "mqtt_server_support"]
    assert lic["support_until"] == add_years(current_end, 2)  # calendar years from the later of now and the end
    [receipt] = smtp.wait(lambda m: m["Subject"].startswith("Receipt"))
    assert receipt["To"] == "ops@example.com" and "iot_bridge_snowflake" in body_of(receipt)
    assert key not in body_of(receipt)  # the key is mailed once, at purchase
    sub_id = shop.shop.orders.get(order_id).stripe_subscription
    assert sub_id is not None
    sub = stripe_client(stripe_url).v1.subscriptions.retrieve(sub_id)
    plan = sub["items"]["data"][0]["plan"]
    assert (plan["usage_type"], plan["amount"], sub["status"]) == ("metered", 5, "active")


def test_support_that_ended_is_renewed_from_today(
    shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str
) -> None:
    license_id, key = issue(shop, ["mqtt_server", "mqtt_server_support"], int(time.time()) - 50 * 86400)
    order_id = order_form(http, {"mqtt_server_support": 1}, key=key)
    pay(http, order_id, card_token(stripe_url))
    wait_state(http, order_id, "fulfilled")
    assert shop.service is not None
    assert abs(shop.service.get_license(license_id)["support_until"] - add_years(int(time.time()), 1)) < 120


def test_bridge_only_upgrade_charges_nothing_now_and_subscribes(
    shop: ShopServer, http: httpx.Client, stripe_url: str
) -> None:
    license_id, key = issue(shop, ["mqtt_server"], None)
    order_id = order_form(http, {"iot_bridge_snowflake": 1}, key=key)
    assert "0.00 USD" in http.get(f"/shop/orders/{order_id}").text
    assert pay(http, order_id, card_token(stripe_url)).json()["state"] == "paid"
    wait_state(http, order_id, "fulfilled")
    assert shop.service is not None and shop.shop is not None
    assert "iot_bridge_snowflake" in shop.service.get_license(license_id)["features"]
    order = shop.shop.orders.get(order_id)
    assert order.stripe_payment_intent is None and order.stripe_subscription is not None


def test_a_card_that_attaches_but_cannot_be_charged_gets_no_bridge(
    shop: ShopServer, http: httpx.Client, stripe_url: str
) -> None:
    """Main: a bridge-only upgrade paid with 4000 0000 0000 0341 (it attaches, every charge
    fails; localstripe declines its charges as Stripe does) was paid and fulfilled with 0.00
    charged. Now a hold proves the card first: declined, the order stays pending, no bridge."""
    license_id, key = issue(shop, ["mqtt_server"], None)
    order_id = order_form(http, {"iot_bridge_snowflake": 1}, key=key)
    answer = pay(http, order_id, card_token(stripe_url, "4000000000000341"))
    assert answer.status_code == 402 and "declined" in answer.text, answer.text
    assert shop.service is not None and shop.shop is not None
    assert shop.shop.orders.get(order_id).state == "pending"
    assert shop.shop.orders.fulfil_due() == 0  # nothing paid, nothing to fulfil
    assert shop.service.get_license(license_id)["features"] == ["mqtt_server"]
    assert pay(http, order_id, card_token(stripe_url)).json()["state"] == "paid"  # a good card: as before
    wait_state(http, order_id, "fulfilled")
    assert "iot_bridge_snowflake" in shop.service.get_license(license_id)["features"]
    # Later, a usage invoice of the subscription fails: the order says so (the vendor decides).
    subscription = shop.shop.orders.get(order_id).stripe_subscription
    invoice = {"id": "in_1", "object": "invoice", "subscription": subscription}
    event = {"id": "evt_invoice_failed", "type": "invoice.payment_failed", "data": {"object": invoice}}
    body, signature = signed_event(event)
    answer = http.post("/shop/stripe/webhook", content=body, headers={"Stripe-Signature": signature})
    assert answer.json()["result"] == "recorded", answer.text  # a money event: the customer is told
    assert "could not be charged" in (shop.shop.orders.get(order_id).last_error or "")
