"""Receipts and invoices: each card-paid order gets a Stripe Invoice (numbered by Stripe, with its
page and PDF) named in the e-mail and on the order page; an order from a configured amount may
be paid by invoice, with a provisional license until ``invoice.paid`` makes it permanent.

Payments run against localstripe; the invoice endpoints (which localstripe lacks: finalize,
paid out of band, send) against tests/shop/stripe_proxy.py, which records the exact requests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from mqtt_licensing.servers.webhooks import Webhooks
from tests.shop.conftest import NOWHERE
from tests.shop.stripe_proxy import StripeProxy
from tests.shop.support import ShopServer, card_token, order_form, pay, run_passes, signed_event, wait_state
from tests.shop.test_portal import Clock
from tests.shop.test_webhook import deliver, event

DAY = 86400


@pytest.fixture
def proxy(localstripe: LocalStripe) -> Iterator[StripeProxy]:
    server = StripeProxy(localstripe.url)
    yield server
    server.close()


def _start(
    tmp_path: Path, proxy: StripeProxy, localstripe: LocalStripe, smtp: SmtpSink, clock: Any = None, **invoices: Any
) -> ShopServer:
    server = ShopServer(tmp_path, stripe_url=proxy.url, smtp_port=smtp.port, clock=clock, invoices=invoices).start()
    localstripe.register_webhook(f"{server.url}/shop/stripe/webhook", "whsec_test_shop_0123456789abcdef")
    return server


@pytest.fixture
def receipts_shop(tmp_path: Path, proxy: StripeProxy, localstripe: LocalStripe, smtp: SmtpSink) -> Iterator[ShopServer]:
    server = _start(tmp_path, proxy, localstripe, smtp, receipts=True)
    yield server
    server.stop()


@pytest.fixture
def invoice_shop(tmp_path: Path, proxy: StripeProxy, localstripe: LocalStripe, smtp: SmtpSink) -> Iterator[ShopServer]:
    """Orders from 400.00 may be paid by invoice, due in 14 days, with a 10-day provisional license."""
    server = _start(
        tmp_path, proxy, localstripe, smtp, pay_by_invoice_from=40000, days_until_due=14, provisional_valid_days=10
    )
    localstripe.register_webhook(NOWHERE, "whsec_test_shop_0123456789abcdef")  # the test sends the events
    yield server
    server.stop()


def _client(server: ShopServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=20, trust_env=False)


def test_a_card_purchase_gets_a_stripe_invoice_named_in_the_mail_and_on_the_page(
    receipts_shop: ShopServer, proxy: StripeProxy, localstripe: LocalStripe, smtp: SmtpSink
) -> None:
    assert receipts_shop.service is not None
    Webhooks(receipts_shop.service.store.engine).add(NOWHERE, ["order.paid", "order.fulfilled"], 0)
    proxy.fail_once.add("/v1/invoices/in_test_1/pay")  # the first pass stops after finalize: the next resumes
    with _client(receipts_shop) as http:
        order_id = order_form(http, {"mqtt_server": 1, "mqtt_server_support": 2})
        assert pay(http, order_id, card_token(localstripe.url)).json()["status"] == "succeeded"
        license_id = wait_state(http, order_id, "fulfilled")["license_id"]
        page = http.get(f"/shop/orders/{order_id}").text
    [mail] = smtp.wait(lambda m: m["Subject"] == "Your MQTT license key")
    body = body_of(mail)
    assert "Order ORD-000001 of " in body and "card ending 4242" in body
    assert "Invoice INV-0001" in body and f"PDF: {proxy.url}/i/in_test_1/pdf" in body
    assert "/shop/portal" in body and license_id in body
    assert 'id="invoice-pdf"' in page and f"{proxy.url}/i/in_test_1/pdf" in page and 'id="card-last4">4242' in page
    # What reached Stripe: one item per line, an invoice that never charges, finalized, paid out of band.
    items = proxy.posts("/v1/invoiceitems")
    assert [(i["params"]["amount"], i["idempotency_key"]) for i in items] == [
        ("50000", f"invoice-item-{order_id}-0"),
        ("20000", f"invoice-item-{order_id}-1"),
    ] * 2
    created, again = proxy.posts("/v1/invoices")  # the retry sends the same key: Stripe's first answer
    assert again["idempotency_key"] == created["idempotency_key"]
    assert created["params"]["auto_advance"] == "false" and created["idempotency_key"] == f"invoice-{order_id}"
    assert created["params"]["metadata[order_id]"] == order_id
    refused, paid = proxy.posts("/v1/invoices/in_test_1/pay")
    assert refused["params"] == paid["params"] == {"paid_out_of_band": "true"}
    assert len(proxy.posts("/v1/invoices/in_test_1/finalize")) == 1  # not again on the retry
    assert len(proxy.invoices) == 1 and [i["invoice"] for i in proxy.items] == ["in_test_1", "in_test_1"]
    # The vendor's webhooks heard of the order, paid then fulfilled.
    types = {d["event_type"] for d in Webhooks(receipts_shop.service.store.engine).deliveries()}
    assert types == {"order.paid", "order.fulfilled"}


def _send(http: httpx.Client, event_id: str, kind: str, obj: dict[str, Any]) -> str:
    body, signature = signed_event(event(obj, event_id, kind))
    answer = deliver(http, body, signature)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["result"])


def _invoiced(server: ShopServer, http: httpx.Client) -> tuple[str, dict[str, Any]]:
    order_id = order_form(http, {"mqtt_server": 1})
    assert 'id="pay-by-invoice"' in http.get(f"/shop/orders/{order_id}").text
    answer = http.post(f"/shop/orders/{order_id}/invoice")
    assert answer.status_code == 303, answer.text
    assert 'data-state="invoiced"' in http.get(f"/shop/orders/{order_id}").text
    assert server.shop is not None
    order = server.shop.orders.get(order_id)
    assert order.stripe_invoice is not None
    return order_id, {"id": order.stripe_invoice, "object": "invoice", "amount_paid": 50000, "currency": "usd"}


def _provisional(server: ShopServer, smtp: SmtpSink, order_id: str) -> str:
    """The provisional license, once mailed (by this test's pass or the server's own worker)."""
    run_passes(server)
    smtp.wait(lambda m: "provisional" in m["Subject"])
    assert server.shop is not None
    license_id = server.shop.orders.get(order_id).license_id
    assert license_id is not None
    return license_id


def test_pay_by_invoice_gives_a_provisional_license_made_permanent_when_the_invoice_is_paid(
    invoice_shop: ShopServer, proxy: StripeProxy, smtp: SmtpSink
) -> None:
    assert invoice_shop.service is not None and invoice_shop.shop is not None
    with _client(invoice_shop) as http:
        order_id, invoice = _invoiced(invoice_shop, http)
        [sent] = proxy.posts("/v1/invoices")
        assert (sent["params"]["collection_method"], sent["params"]["days_until_due"]) == ("send_invoice", "14")
        assert len(proxy.posts(f"/v1/invoices/{invoice['id']}/send")) == 1
        _provisional(invoice_shop, smtp, order_id)
        [mail] = smtp.wait(lambda m: "provisional" in m["Subject"])
        key = re.search(r"^\s+(MQL\S+)\s*$", body_of(mail), re.M)
        assert key and "Invoice INV-0001" in body_of(mail)
        order = invoice_shop.shop.orders.get(order_id)
        assert order.state == "invoiced" and order.license_id is not None
        lic = invoice_shop.service.get_license(order.license_id)
        assert lic["expires_at"] == order.provisional_until and lic["expires_at"] > order.created_at + 9 * DAY
        # Stripe delivers invoice.paid (three times: the license changes once).
        results = [_send(http, "evt_invoice_paid", "invoice.paid", invoice) for _ in range(3)]
        assert results == ["paid", "duplicate", "duplicate"]
        wait_state(http, order_id, "fulfilled")
    lic = invoice_shop.service.get_license(order.license_id)
    assert lic["expires_at"] is None and lic["status"] == "active"
    [receipt] = smtp.wait(lambda m: m["Subject"] == f"Receipt: license {order.license_id} is paid")
    assert "now permanent" in body_of(receipt) and "by invoice INV-0001" in body_of(receipt)
    assert len(proxy.posts("/v1/invoices")) == 1  # no receipt invoice on top of the paid one
    assert len(smtp.messages) == 2


def test_an_invoice_voided_suspends_the_provisional_license(invoice_shop: ShopServer, smtp: SmtpSink) -> None:
    assert invoice_shop.service is not None and invoice_shop.shop is not None
    with _client(invoice_shop) as http:
        order_id, invoice = _invoiced(invoice_shop, http)
        license_id = _provisional(invoice_shop, smtp, order_id)
        assert _send(http, "evt_void", "invoice.voided", invoice) == "recorded"
        run_passes(invoice_shop)
        assert 'data-state="void"' in http.get(f"/shop/orders/{order_id}").text
    [mail] = smtp.wait(lambda m: m["Subject"] == f"License {license_id} changed")  # sent once it is suspended
    assert invoice_shop.service.get_license(license_id)["status"] == "suspended"
    assert "suspended: the invoice was not paid" in body_of(mail)


def test_without_a_provisional_license_the_key_comes_when_the_invoice_is_paid(
    tmp_path: Path, proxy: StripeProxy, localstripe: LocalStripe, smtp: SmtpSink
) -> None:
    server = _start(tmp_path, proxy, localstripe, smtp, pay_by_invoice_from=40000)
    localstripe.register_webhook(NOWHERE, "whsec_test_shop_0123456789abcdef")
    try:
        assert server.shop is not None
        with _client(server) as http:
            order_id, invoice = _invoiced(server, http)
            [notice] = smtp.wait(lambda m: m["Subject"] == "Your order: invoice to pay")
            assert "due in 30 days" in body_of(notice) and f"View: {proxy.url}/i/{invoice['id']}" in body_of(notice)
            run_passes(server)
            assert server.shop.orders.get(order_id).license_id is None  # nothing before the money
            assert _send(http, "evt_paid", "invoice.paid", invoice) == "paid"
            license_id = wait_state(http, order_id, "fulfilled")["license_id"]
        [mail] = smtp.wait(lambda m: m["Subject"] == "Your MQTT license key")
        assert "by invoice INV-0001" in body_of(mail)
        assert server.license_by_key(re.findall(r"^\s+(MQL\S+)\s*$", body_of(mail), re.M)[0]).id == license_id
    finally:
        server.stop()


def test_a_lost_invoice_paid_is_made_good_by_asking_stripe(
    tmp_path: Path, proxy: StripeProxy, localstripe: LocalStripe, smtp: SmtpSink
) -> None:
    clock = Clock()
    server = _start(tmp_path, proxy, localstripe, smtp, clock, pay_by_invoice_from=40000, provisional_valid_days=10)
    localstripe.register_webhook(NOWHERE, "whsec_test_shop_0123456789abcdef")
    try:
        assert server.shop is not None and server.service is not None
        with _client(server) as http:
            order_id, invoice = _invoiced(server, http)
            license_id = _provisional(server, smtp, order_id)
            proxy.invoices[invoice["id"]].update(status="paid", amount_paid=50000)  # paid; its event never comes
            run_passes(server)
            assert server.shop.orders.get(order_id).state == "invoiced"  # asked within the hour already
            clock.now += 3601
            run_passes(server)
            wait_state(http, order_id, "fulfilled")
        assert server.service.get_license(license_id)["expires_at"] is None
        smtp.wait(lambda m: m["Subject"] == f"Receipt: license {license_id} is paid")
    finally:
        server.stop()


def test_a_small_order_is_paid_by_card_only(invoice_shop: ShopServer, proxy: StripeProxy) -> None:
    assert invoice_shop.service is not None
    _lic, key = invoice_shop.service.issue_license(features=["mqtt_server"])
    with _client(invoice_shop) as http:
        order_id = order_form(http, {"mqtt_server_support": 1}, key=key)  # 100.00, under 400.00
        assert 'id="pay-by-invoice"' not in http.get(f"/shop/orders/{order_id}").text
        answer = http.post(f"/shop/orders/{order_id}/invoice")
        assert answer.status_code == 400 and "pay by invoice is for orders from" in answer.text
    assert proxy.posts("/v1/invoices") == []


def test_an_unpaid_invoice_is_recorded_and_the_customer_told(invoice_shop: ShopServer, smtp: SmtpSink) -> None:
    assert invoice_shop.service is not None and invoice_shop.shop is not None
    with _client(invoice_shop) as http:
        order_id, invoice = _invoiced(invoice_shop, http)
        license_id = _provisional(invoice_shop, smtp, order_id)
        failed = {**invoice, "amount_due": 50000, "amount_paid": 0}
        assert [_send(http, "evt_failed", "invoice.payment_failed", failed) for _ in range(2)] == [
            "recorded",
            "duplicate",
        ]
    [mail] = smtp.wait(lambda m: m["Subject"] == f"License {license_id} changed")
    assert "payment failed" in body_of(mail) and "check-in" not in body_of(mail)
    assert invoice_shop.service.get_license(license_id)["status"] == "active"
    assert invoice_shop.shop.orders.get(order_id).state == "invoiced"


def test_the_buyers_purchase_order_number_is_printed_on_the_invoice(
    invoice_shop: ShopServer, proxy: StripeProxy, smtp: SmtpSink
) -> None:
    """Enterprise buyers pay against a purchase order: its number goes on Stripe's invoice (a
    custom field), on the order page and in our e-mail; kept from the first try, so a retried
    invoice sends what the first one sent."""
    assert invoice_shop.shop is not None
    with _client(invoice_shop) as http:
        order_id = order_form(http, {"mqtt_server": 1})
        assert 'id="po-number"' in http.get(f"/shop/orders/{order_id}").text
        proxy.fail_once.add("/v1/invoices")  # the first try fails at Stripe: the page says so
        failed = http.post(f"/shop/orders/{order_id}/invoice", data={"po_number": " PO-4711\n "})
        assert failed.status_code == 303  # no dead end: back on the order, the reason shown, a retry offered
        page = http.get(f"/shop/orders/{order_id}").text
        assert "payment provider error" in page and 'id="pay-by-invoice"' in page
        answer = http.post(f"/shop/orders/{order_id}/invoice", data={"po_number": "PO-other"})
        assert answer.status_code == 303, answer.text
        page = http.get(f"/shop/orders/{order_id}").text
        assert 'data-state="invoiced"' in page and 'id="po">PO-4711<' in page
    first, sent = proxy.posts("/v1/invoices")
    for request in (first, sent):  # the same parameters both times, as Stripe wants for one key
        assert request["params"]["custom_fields[0][name]"] == "PO number"
        assert request["params"]["custom_fields[0][value]"] == "PO-4711"
        assert request["idempotency_key"] == f"invoice-{order_id}"
    assert proxy.invoices["in_test_1"]["custom_fields"] == [{"name": "PO number", "value": "PO-4711"}]
    run_passes(invoice_shop)
    [mail] = smtp.wait(lambda m: "provisional" in m["Subject"])
    assert "Your purchase order: PO-4711" in body_of(mail)
