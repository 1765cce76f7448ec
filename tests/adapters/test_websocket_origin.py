"""MQTT over WebSocket from a browser: which pages may connect, and who (issue 20 row 8).

A browser sends the Origin of the page that opens a WebSocket; before, any page an operator
opened could read and publish through the broker's ``ws`` listener, anonymously.
"""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from mqtt_licensing.adapters.amqtt.origins import OriginPolicy
from mqtt_licensing.adapters.amqtt.runner import BrokerThread
from mqtt_licensing.servers._run import free_port
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, broker_config, connect_packet

CONNACK_OK, CONNACK_NOT_AUTHORIZED = b"\x20\x02\x00\x00", b"\x20\x02\x00\x05"


def mqtt_over_ws(port: int, origin: str | None, **login) -> bytes:
    """The CONNACK to a CONNECT sent over a WebSocket opened with this Origin."""
    with ws_connect(f"ws://127.0.0.1:{port}/", origin=origin, subprotocols=["mqtt"], open_timeout=10) as ws:  # type: ignore[arg-type,list-item]
        ws.send(connect_packet("browser", **login))
        connack = ws.recv(timeout=10)
        assert isinstance(connack, bytes)
        return connack[:4]


@pytest.fixture
def ws_broker(tmp_path, vendor, request):
    tcp_port, ws_port, http_port = free_port(), free_port(), free_port()
    agent = getattr(request, "param", {})
    config = broker_config(
        tcp_port,
        tmp_path / "s",
        vendor_url=vendor.url,
        vendor_public_key=vendor.public_key_text,
        ws_port=ws_port,
        http_bind=f"127.0.0.1:{http_port}",
        **agent,
    )
    with BrokerThread(config):
        yield ws_port, http_port


def test_a_page_from_another_site_cannot_open_the_websocket(ws_broker):
    ws_port, _ = ws_broker
    with pytest.raises(InvalidStatus) as refused:
        mqtt_over_ws(ws_port, "https://evil.example", username=ADMIN, password=ADMIN_PASSWORD)
    assert refused.value.response.status_code == 403


def test_the_license_page_and_non_browser_clients_connect(ws_broker):
    ws_port, http_port = ws_broker
    login = {"username": ADMIN, "password": ADMIN_PASSWORD}
    assert mqtt_over_ws(ws_port, f"http://127.0.0.1:{http_port}", **login) == CONNACK_OK  # the page's own origin
    assert mqtt_over_ws(ws_port, None, **login) == CONNACK_OK  # no Origin: not a browser
    with pytest.raises(InvalidStatus):
        mqtt_over_ws(ws_port, f"http://127.0.0.1:{http_port + 1}", **login)  # same host, another port's page


def test_anonymous_connects_over_websocket_are_refused_by_default(ws_broker):
    ws_port, _ = ws_broker
    assert mqtt_over_ws(ws_port, None) == CONNACK_NOT_AUTHORIZED


@pytest.mark.parametrize(
    "ws_broker", [{"ws_allow_anonymous": True, "ws_origins": ["https://scada.example"]}], indirect=True
)
def test_configured_origins_and_anonymous_websocket_clients(ws_broker):
    ws_port, _ = ws_broker
    assert mqtt_over_ws(ws_port, "https://scada.example") == CONNACK_OK
    with pytest.raises(InvalidStatus):
        mqtt_over_ws(ws_port, "https://evil.example")


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "broker:8083", True),
        ("http://broker:8080", "broker:8083", True),
        ("https://broker:8080", "BROKER:8083", True),
        ("http://broker:8081", "broker:8083", False),
        ("http://broker:8083", "broker:8083", True),  # the listener's own address: paho sends it
        ("http://evil.example:8080", "broker:8083", False),
        ("https://plant.example", "anything", True),  # ws_url's host (behind a proxy)
        ("null", "broker:8083", False),  # a sandboxed or file:// page
        ("https://ops.example/", "broker:8083", True),  # listed in ws_origins
    ],
)
def test_origin_policy(origin, host, allowed):
    policy = OriginPolicy.build("0.0.0.0:8080", "wss://plant.example/mqtt", ["https://ops.example"])
    assert policy.allows(origin, host) is allowed
