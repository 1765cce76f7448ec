"""A store that looks like a business: the seller's name, logo, contact and policies on every page
and e-mail (from the shop config), one stylesheet, and order numbers customers can quote."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from mqtt_licensing.servers.shop.seller import parse_seller
from tests.shop.conftest import start_shop
from tests.shop.support import ShopServer, card_token, order_form, pay, wait_state

SELLER = {
    "name": "Example Automation GmbH",
    "email": "sales@example-automation.test",
    "address": "Hafenstrasse 1, 20457 Hamburg, Germany",
    "logo_url": "https://example-automation.test/logo.svg",
    "terms_url": "https://example-automation.test/terms",
    "privacy_url": "https://example-automation.test/privacy",
    "refund_url": "https://example-automation.test/refunds",
    "order_prefix": "EXA",
}


@pytest.fixture
def business(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink) -> Iterator[ShopServer]:
    server = start_shop(tmp_path, localstripe, smtp, seller=SELLER)
    yield server
    server.stop()


@pytest.fixture
def client(business: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=business.url, timeout=20, trust_env=False) as c:
        yield c


def test_every_page_names_the_seller_its_contact_and_policies(client: httpx.Client) -> None:
    for path in ("/shop/", "/shop/upgrade", "/shop/portal"):
        page = client.get(path).text
        assert SELLER["name"] in page and f'src="{SELLER["logo_url"]}"' in page
        assert f'href="mailto:{SELLER["email"]}"' in page and SELLER["address"] in page
        for link in ("terms_url", "privacy_url", "refund_url"):
            assert f'href="{SELLER[link]}"' in page
        assert '<link rel="stylesheet" href="/shop/static/store.css">' in page and "<style" not in page
        assert 'href="#main"' in page and '<main id="main">' in page  # a skip link to the content
    css = client.get("/shop/static/store.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in css.text and "@media" in css.text


def test_orders_have_numbers_customers_quote_on_the_page_and_in_the_mail(
    business: ShopServer, client: httpx.Client, smtp: SmtpSink, localstripe: LocalStripe
) -> None:
    first = order_form(client, {"mqtt_server": 1})
    second = order_form(client, {"mqtt_server": 1, "mqtt_server_support": 1})
    assert 'id="order-number">EXA-000001<' in client.get(f"/shop/orders/{first}").text
    assert 'id="order-number">EXA-000002<' in client.get(f"/shop/orders/{second}").text
    pay(client, second, card_token(localstripe.url))
    wait_state(client, second, "fulfilled")
    [mail] = smtp.wait(lambda m: m["Subject"] == "Your MQTT license key")
    body = body_of(mail).replace("\r\n", "\n")
    assert re.search(r"^Order EXA-000002 of \d{1,2} [A-Z][a-z]+ \d{4}, Example Automation GmbH$", body, re.M)
    assert body.rstrip().endswith(f"Refunds: {SELLER['refund_url']}")
    assert SELLER["address"] in body and SELLER["email"] in body


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"terms_url": "ftp://example.test/terms"}, "seller.terms_url must be a URL"),
        ({"phone": "+49 40 123"}, "unknown field(s) phone"),
        ({"email": "nobody"}, "seller.email must be an e-mail address"),
        ({"order_prefix": "EX-A"}, "order_prefix must be up to 8 letters or digits"),
    ],
)
def test_a_wrong_seller_section_is_one_line(change: dict[str, Any], words: str) -> None:
    data = copy.deepcopy(SELLER) | change
    with pytest.raises(LicensingError) as info:
        parse_seller(data)
    assert words in info.value.message and "\n" not in info.value.message


def test_tax_at_the_countrys_rate_is_shown_before_payment_and_charged(
    tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink
) -> None:
    server = start_shop(tmp_path, localstripe, smtp, tax={"label": "VAT", "rates": {"DE": 19, "US": 0}})
    try:
        with httpx.Client(base_url=server.url, timeout=20, trust_env=False) as http:
            page = http.get("/shop/").text
            assert '<select name="country" id="country" required>' in page and '<option value="DE"' in page
            r = http.post("/shop/orders", data={"email": "a@example.com", "product": "mqtt_server"})
            assert r.status_code == 400 and "choose your country" in r.text  # inline, the choice kept
            r = http.post("/shop/orders", data={"email": "a@example.com", "product": "mqtt_server", "country": "DE"})
            assert r.status_code == 303
            order_id = r.headers["location"].rsplit("/", 1)[1]
            page = http.get(f"/shop/orders/{order_id}").text  # before payment
            assert "VAT 19% (DE)" in page and 'id="tax">95.00 USD<' in page and 'id="total">595.00 USD<' in page
            assert pay(http, order_id, card_token(localstripe.url)).json()["status"] == "succeeded"
            wait_state(http, order_id, "fulfilled")
            assert server.shop is not None
            intent = server.shop.orders.gateway.intent(server.shop.orders.get(order_id).stripe_payment_intent or "")
            assert intent.amount == 59500  # what Stripe charged: the total with tax
        [mail] = smtp.wait(lambda m: m["Subject"] == "Your MQTT license key")
        body = body_of(mail)
        assert "Tax (DE): 95.00 USD" in body and "Total: 595.00 USD" in body
    finally:
        server.stop()
