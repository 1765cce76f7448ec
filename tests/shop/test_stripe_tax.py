"""Stripe Tax where the shop config says ``tax: {stripe: true}``: the tax is Stripe's calculation for
the buyer's address and the lines, shown before payment and charged; its id goes on the order, on
the PaymentIntent's metadata and on the receipt invoice; the paid sale becomes a tax transaction, and
money given back (a refund) a reversal of it.
localstripe has no Stripe Tax: tests/shop/stripe_proxy.py answers ``/v1/tax/*`` and records each
request exactly (method, path, parameters, Idempotency-Key); the rest is localstripe behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.cli.main import main
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from mqtt_licensing.servers.shop.tax import parse_tax
from tests.shop.stripe_proxy import StripeProxy
from tests.shop.support import WEBHOOK_SECRET, ShopServer, card_token, pay, wait_state
from tests.shop.test_refunds import _send, _settled


@pytest.fixture
def proxy(localstripe: LocalStripe) -> Iterator[StripeProxy]:
    server = StripeProxy(localstripe.url)
    yield server
    server.close()


@pytest.fixture
def tax_shop(tmp_path: Path, proxy: StripeProxy, smtp: SmtpSink, localstripe: LocalStripe) -> Iterator[ShopServer]:
    server = ShopServer(
        tmp_path, stripe_url=proxy.url, smtp_port=smtp.port, tax={"stripe": True}, invoices={"receipts": True}
    ).start()
    localstripe.register_webhook(f"{server.url}/shop/stripe/webhook", WEBHOOK_SECRET)
    yield server
    server.stop()


def _order(http: httpx.Client, **address: str) -> httpx.Response:
    data: dict[str, Any] = {"email": "buyer@example.com", "product": ["mqtt_server", "mqtt_server_support"]}
    data["years_mqtt_server_support"] = "1"
    return http.post("/shop/orders", data={**data, **address})


@pytest.mark.timeout(90)
def test_stripe_tax_is_calculated_shown_charged_and_recorded(
    tax_shop: ShopServer,
    proxy: StripeProxy,
    localstripe: LocalStripe,
    smtp: SmtpSink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with httpx.Client(base_url=tax_shop.url, timeout=20, trust_env=False) as http:
        page = http.get("/shop/").text
        assert 'id="country"' in page and 'id="postal-code"' in page  # the address is asked on the store page
        r = _order(http, country="de", postal_code="10115")
        assert r.status_code == 303, r.text
        order_id = r.headers["location"].rsplit("/", 1)[1]
        [calc] = proxy.posts("/v1/tax/calculations")
        assert calc["idempotency_key"] == f"tax-{order_id}"
        assert calc["params"] == {
            "currency": "usd",
            "line_items[0][amount]": "50000",
            "line_items[0][quantity]": "1",
            "line_items[0][reference]": "0-mqtt_server",
            "line_items[0][tax_behavior]": "exclusive",
            "line_items[1][amount]": "10000",
            "line_items[1][quantity]": "1",
            "line_items[1][reference]": "1-mqtt_server_support",
            "line_items[1][tax_behavior]": "exclusive",
            "customer_details[address][country]": "DE",
            "customer_details[address][postal_code]": "10115",
            "customer_details[address_source]": "billing",
        }
        page = http.get(f"/shop/orders/{order_id}").text  # before payment: Stripe's tax and the total with it
        assert "Tax (DE)" in page and 'id="tax">114.00 USD<' in page and 'id="total">714.00 USD<' in page

        assert pay(http, order_id, card_token(localstripe.url)).json()["status"] == "succeeded"
        wait_state(http, order_id, "fulfilled", timeout=30)
    assert tax_shop.shop is not None
    order = tax_shop.shop.orders.get(order_id)
    assert order.tax == 11400 and order.amount == 71400 and order.tax_calculation == "taxcalc_test_1"
    [intent] = proxy.posts("/v1/payment_intents")
    assert intent["params"]["amount"] == "71400" and intent["params"]["metadata[tax_calculation]"] == "taxcalc_test_1"
    [recorded] = proxy.posts("/v1/tax/transactions/create_from_calculation")
    wanted = {"calculation": "taxcalc_test_1", "reference": order_id, "metadata[order_id]": order_id}
    assert recorded["params"] == wanted
    assert recorded["idempotency_key"] == f"tax-transaction-{order_id}"
    assert order.tax_transaction == "tax_test_1"
    # The receipt invoice: the tax as its own line, the calculation named on it and on the invoice.
    tax_item = [i for i in proxy.posts("/v1/invoiceitems") if i["params"]["description"] == "Tax (DE)"]
    assert [i["params"]["amount"] for i in tax_item] == ["11400"]
    assert tax_item[0]["params"]["metadata[tax_calculation]"] == "taxcalc_test_1"
    [invoice] = proxy.posts("/v1/invoices")
    assert invoice["params"]["metadata[tax_calculation]"] == "taxcalc_test_1"
    assert proxy.invoices["in_test_1"]["amount_due"] == 71400  # the invoice adds up to what was charged
    body = body_of(smtp.wait(lambda m: m["Subject"].startswith("Your MQTT license key"), timeout=20)[0])
    assert "Tax (DE): 114.00 USD" in body and "714.00 USD" in body

    # The support year refunded with its tax (100.00 + 19.00): support shortened, and the money given
    # back taken out of Stripe's tax reports by a reversal of the order's tax transaction (once,
    # however often the event comes).
    charge = {"id": "ch_tax", "object": "charge", "payment_intent": order.stripe_payment_intent, "amount": 71400,
              "amount_refunded": 11900, "refunded": False}  # fmt: skip
    with httpx.Client(base_url=tax_shop.url, timeout=20, trust_env=False) as http:
        answers = [_send(http, "evt_refund_year", "charge.refunded", charge) for _ in range(2)]
    assert answers == ["recorded", "duplicate"]
    [applied] = _settled(tax_shop, order_id, 1)
    assert applied["outcome"].startswith("support shortened by 1 year(s)")
    [reversal] = proxy.posts("/v1/tax/transactions/create_reversal")
    assert reversal["params"] == {
        "mode": "partial",
        "original_transaction": "tax_test_1",
        "flat_amount": "-11900",
        "reference": f"{order_id}-evt_refund_year",
    }
    assert reversal["idempotency_key"] == f"tax-reversal-{order_id}-evt_refund_year"
    # The vendor sees it in `vendor orders --json`.
    capsys.readouterr()
    assert main(["vendor", "orders", "--data", str(tax_shop.data_dir), "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["tax"], listed["country"], listed["tax_calculation"], listed["tax_transaction"]) == (
        11400, "DE", "taxcalc_test_1", "tax_test_1"
    )  # fmt: skip


@pytest.mark.timeout(60)
def test_an_address_stripe_tax_cannot_place_stays_on_the_page(tax_shop: ShopServer, proxy: StripeProxy) -> None:
    with httpx.Client(base_url=tax_shop.url, timeout=20, trust_env=False) as http:
        r = _order(http, country="US")  # a US address needs a postal code
        assert r.status_code == 400 and "check the country and postal code" in r.text
        assert 'value="US"' in r.text and 'value="buyer@example.com"' in r.text  # what was typed, kept
        r = _order(http, country="Germany")
        assert r.status_code == 400 and "two letters" in r.text
        assert len(proxy.posts("/v1/tax/calculations")) == 1  # the typo never reached Stripe
        r = _order(http, country="US", postal_code="94107")
        assert r.status_code == 303
    assert tax_shop.shop is not None
    order = tax_shop.shop.orders.get(r.headers["location"].rsplit("/", 1)[1])
    assert order.country == "US" and order.tax == 0 and order.tax_calculation == "taxcalc_test_1"


@pytest.mark.parametrize(
    "data, words",
    [
        ({"stripe": True, "rates": {"DE": 19}}, "not both"),
        ({"stripe": "yes"}, "not both"),
        ({"stripe": True, "label": ""}, "label"),
    ],
)
def test_a_wrong_stripe_tax_section_is_one_line(data: dict[str, Any], words: str) -> None:
    with pytest.raises(LicensingError) as info:
        parse_tax(data)
    assert words in info.value.message and "\n" not in info.value.message
    assert parse_tax({"stripe": True}).stripe and parse_tax({"stripe": True}).label == "Tax"


@pytest.mark.timeout(60)
def test_stripe_tax_on_an_order_paid_by_invoice(
    tmp_path: Path, proxy: StripeProxy, smtp: SmtpSink, localstripe: LocalStripe
) -> None:
    """The invoice the buyer pays carries Stripe's tax as its own line, naming the calculation;
    the tax transaction is recorded when ``invoice.paid`` makes the order paid, not before."""
    invoices = {"receipts": True, "pay_by_invoice_from": 40000}
    server = ShopServer(tmp_path, stripe_url=proxy.url, smtp_port=smtp.port, tax={"stripe": True}, invoices=invoices)
    server.start()
    localstripe.register_webhook(f"{server.url}/shop/stripe/webhook", WEBHOOK_SECRET)
    try:
        with httpx.Client(base_url=server.url, timeout=20, trust_env=False) as http:
            order_id = _order(http, country="FR").headers["location"].rsplit("/", 1)[1]
            assert http.post(f"/shop/orders/{order_id}/invoice").status_code == 303
            assert server.shop is not None
            order = server.shop.orders.get(order_id)
            assert (order.state, order.tax, order.amount) == ("invoiced", 12000, 72000)  # 20 % of 600.00
            assert proxy.invoices["in_test_1"]["amount_due"] == 72000
            [tax_item] = [i for i in proxy.posts("/v1/invoiceitems") if i["params"]["description"] == "Tax (FR)"]
            assert tax_item["params"]["metadata[tax_calculation]"] == order.tax_calculation
            assert proxy.posts("/v1/tax/transactions/create_from_calculation") == []  # not paid yet
            invoice = {"id": "in_test_1", "object": "invoice", "amount_paid": 72000, "currency": "usd"}
            assert _send(http, "evt_invoice_paid_tax", "invoice.paid", invoice) == "paid"
            wait_state(http, order_id, "fulfilled", timeout=30)
        [recorded] = proxy.posts("/v1/tax/transactions/create_from_calculation")
        assert recorded["params"]["reference"] == order_id
        assert len(proxy.posts("/v1/invoices")) == 1  # no receipt invoice on top of the paid one
    finally:
        server.stop()
