"""The store sells from the vendor's catalogue: features and an edition named in the shop config
with their prices only (titles, kinds and rules from the catalogue); an order that licenses
nothing a broker can serve is refused before payment, inline; an edition bought here is
activated online and its certificate carries the new features' definitions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.core.documents import ActivationCertificate
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.features import resolve
from mqtt_licensing.core.timefmt import add_years
from mqtt_licensing.servers.shop.app import Shop
from mqtt_licensing.servers.shop.catalogue import Catalogue
from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from tests.servers.activation.conftest import Instance
from tests.shop.conftest import start_shop
from tests.shop.support import ShopServer, card_token, order_form, pay, wait_state
from tests.shop.test_purchase import key_from

EDITION = ["iot_bridge_kafka", "mqtt_server", "sparkplug_b"]
PRODUCTS = {
    "currency": "usd",
    "products": [
        {"feature": "mqtt_server", "price": 50000},
        {"feature": "mqtt_server_support", "price": 10000},
        {"feature": "iot_bridge_snowflake", "price": 5, "unit": "1,000 messages"},
        {"feature": "sparkplug_b", "price": 20000},
        {"template": "enterprise", "name": "Enterprise edition", "price": 200000},
    ],
}


def vendor_cli(data: Path, *argv: str) -> None:
    assert main(["vendor", *argv[:2], *argv[2:], "--data", str(data)]) == 0


@pytest.fixture
def catalogue_shop(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink) -> Iterator[ShopServer]:
    data = tmp_path / "vendor"
    assert main(["vendor", "init", str(data)]) == 0
    vendor_cli(data, "feature", "add", "sparkplug_b", "--title", "Sparkplug B", "--kind", "perpetual",
               "--gates-clients", "--requires", "mqtt_server")  # fmt: skip
    vendor_cli(data, "feature", "add", "iot_bridge_kafka", "--title", "IoT Bridge for Kafka", "--kind", "metered",
               "--unit", "messages", "--gates-clients", "--requires", "mqtt_server")  # fmt: skip
    vendor_cli(data, "template", "add", "enterprise", "--features", ",".join(EDITION), "--max-connections", "500",
               "--activations", "3", "--support-years", "1")  # fmt: skip
    server = start_shop(tmp_path, localstripe, smtp, catalogue=PRODUCTS)
    yield server
    server.stop()


@pytest.fixture
def http(catalogue_shop: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=catalogue_shop.url, timeout=20, trust_env=False) as client:
        yield client


def refused(http: httpx.Client, data: dict[str, Any]) -> str:
    r = http.post("/shop/orders", data={"email": "x@example.com", **data})
    assert r.status_code == 400 and 'id="order-error"' in r.text and 'id="purchase"' in r.text  # the form, again
    return r.text


def test_the_page_says_what_each_product_is_from_the_catalogue(http: httpx.Client) -> None:
    page = http.get("/shop/").text
    for title in ("MQTT Server", "MQTT Server Support", "Sparkplug B", "Enterprise edition"):
        assert f"<strong>{title}</strong>" in page
    assert (
        "Includes: IoT Bridge for Kafka, MQTT Server, Sparkplug B; 500 connections; 3 activations; 1 year of support"
        in page
    )
    assert "100.00 USD per year" in page  # support is a term feature: sold per year without saying so twice
    assert "for the broker&#39;s sparkplug_b clients; needs MQTT Server" in page


def test_orders_that_serve_nothing_are_refused_before_payment(catalogue_shop: ShopServer, http: httpx.Client) -> None:
    page = refused(http, {"product": "mqtt_server_support", "years_mqtt_server_support": "2"})
    assert "MQTT Server Support needs MQTT Server: add it to the order" in page
    assert 'value="mqtt_server_support" id="product-mqtt_server_support" checked' in page  # the choice is kept
    page = refused(http, {"product": "iot_bridge_snowflake"})
    assert "IoT Bridge for Snowflake needs MQTT Server" in page and "upgrade of a license that has it" in page
    assert catalogue_shop.shop is not None
    with catalogue_shop.shop.store.transaction() as tx:
        assert tx.order_ids("pending") == []  # nothing to pay was created
    # the vendor relaxes the rule: support alone is then sold, but it still serves no client
    data = catalogue_shop.data_dir
    vendor_cli(data, "feature", "update", "mqtt_server_support", "--requires", "")
    page = refused(http, {"product": "mqtt_server_support", "years_mqtt_server_support": "1"})
    assert "licenses nothing a broker can serve clients with: add MQTT Server" in page


async def test_an_edition_bought_in_the_store_activates_with_its_definitions(
    catalogue_shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str
) -> None:
    order_id = order_form(http, {"enterprise": 1})
    assert pay(http, order_id, card_token(stripe_url)).status_code == 200
    wait_state(http, order_id, "fulfilled")
    [mail] = smtp.wait(lambda m: m["Subject"] == "Your MQTT license key")
    key = key_from(body_of(mail))
    lic = catalogue_shop.license_by_key(key)
    assert list(lic.features) == EDITION and (lic.max_connections, lic.max_activations) == (500, 3)
    assert lic.support_until == add_years(lic.created_at, 1)

    async with ActivationClient(catalogue_shop.url) as client:
        result = await client.activate(key, Instance().activate(key))
    assert catalogue_shop.service is not None
    cert = ActivationCertificate.open(result["certificate"], catalogue_shop.service.public_key)
    defs = resolve(cert.features, cert.definitions)
    assert defs["sparkplug_b"].title == "Sparkplug B" and defs["sparkplug_b"].gates == "class"
    assert defs["iot_bridge_kafka"].unit == "messages" and defs["iot_bridge_kafka"].metered

    # the upgrade page names what the license has by title
    page = http.post("/shop/upgrade", data={"license_key": key}).text
    assert (
        "It has: IoT Bridge for Kafka (iot_bridge_kafka), MQTT Server (mqtt_server), Sparkplug B (sparkplug_b)" in page
    )


def test_titles_and_retirement_show_in_the_store_at_once(catalogue_shop: ShopServer, http: httpx.Client) -> None:
    data = catalogue_shop.data_dir
    vendor_cli(data, "feature", "update", "sparkplug_b", "--title", "Sparkplug B Edge")
    assert "<strong>Sparkplug B Edge</strong>" in http.get("/shop/").text
    vendor_cli(data, "feature", "retire", "sparkplug_b")
    page = http.get("/shop/").text
    assert 'id="product-sparkplug_b"' not in page and "Enterprise edition" in page


def test_a_product_the_catalogue_lacks_stops_the_store_in_one_line(catalogue_shop: ShopServer) -> None:
    assert catalogue_shop.service is not None and catalogue_shop.shop is not None
    config = catalogue_shop.shop.config
    for product, words in (({"feature": "gold", "price": 1}, "unknown feature 'gold'"),
                           ({"template": "platinum", "price": 1}, "unknown template 'platinum'")):  # fmt: skip
        catalogue = Catalogue.from_config({"currency": "usd", "products": [product]})
        with pytest.raises(LicensingError) as info:
            Shop(catalogue_shop.service, replace(config, catalogue=catalogue), catalogue_shop.shop.store)
        assert words in info.value.message and "\n" not in info.value.message
