"""The HTTP listener without a browser: what it serves, what it never serves, how it
fails, and that the page ships as package data.

The coroutines run on their own loop in a worker thread (``run``): the browser tests
of this folder keep Playwright's event loop running on the main thread.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import socket
import tomllib
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.servers._run import free_port
from mqtt_licensing.web import HttpListener, PageConfig, create_app, parse_bind, start_http
from tests.helpers.broker import READER, READER_PASSWORD, MqttClient, start_broker
from tests.web.conftest import STORE_URL

READER_LOGIN = (READER, READER_PASSWORD)

ROOT = Path(__file__).resolve().parents[2]
STATIC = resources.files("mqtt_licensing.web") / "static"


def run(coro):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=30)


def get(app, path):
    async def fetch():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://page") as client:
            return await client.get(path)

    return run(fetch())


def test_page_files_health_and_page_config():
    app = create_app(PageConfig(ws_port=9083, store_url=STORE_URL))
    index = get(app, "/")
    assert index.status_code == 200 and "vendor/mqtt.min.js" in index.text
    for path in ("/app.js", "/keys.js", "/app.css", "/vendor/mqtt.min.js", "/vendor/LICENSE.md"):
        assert (get(app, path)).status_code == 200, path
    assert (get(app, "/healthz")).text == "ok\n"
    config = (get(app, "/page-config.json")).json()
    # Where the broker is and where the store is; no license data travels over HTTP.
    assert set(config) == {"ws_url", "ws_port", "ws_tls", "ws_path", "store_url", "features"}
    assert config["ws_port"] == 9083 and config["store_url"] == STORE_URL
    assert "mqtt_server" in {f["name"] for f in config["features"]}
    assert (get(app, "/state.json")).status_code == 404


def test_security_headers_on_every_response():
    app = create_app(PageConfig())
    for path in ("/", "/page-config.json", "/nothing-here"):
        response = get(app, path)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert response.headers["cache-control"] == "no-store"


def test_extra_routes_come_before_the_static_files():
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def metrics(_request):
        return PlainTextResponse("# metrics\n")

    app = create_app(PageConfig(), routes=[Route("/metrics", metrics)])
    assert (get(app, "/metrics")).text == "# metrics\n"


@pytest.mark.parametrize("text", ["8080", "host:", ":8080", "host:http", "host:70000", ""])
def test_a_bad_bind_is_one_line_naming_the_fix(text):
    with pytest.raises(LicensingError) as err:
        parse_bind(text)
    assert "HOST:PORT" in err.value.message and "\n" not in err.value.message


def test_ipv6_bind():
    assert parse_bind("[::1]:9080") == ("::1", 9080)


def test_a_port_in_use_is_one_line_and_start_stop_are_clean():
    async def scenario():
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            listener = HttpListener(create_app(PageConfig()), f"127.0.0.1:{port}")
            with pytest.raises(LicensingError) as err:
                await listener.start()
            assert "choose another port" in err.value.message and "\n" not in err.value.message
            assert await start_http(f"127.0.0.1:{port}", PageConfig()) is None
        listener = HttpListener(create_app(PageConfig()), "127.0.0.1:0")
        await listener.start()
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{listener.url}/healthz")).text == "ok\n"
        await listener.stop()
        await listener.stop()  # idempotent
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(f"{listener.url}/healthz")

    run(scenario())


def test_broker_serves_mqtt_when_the_page_cannot_bind(tmp_path, vendor, caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        caplog.set_level(logging.ERROR, logger="mqtt_licensing.web")
        with start_broker(
            tmp_path / "state", vendor=vendor, ws_port=free_port(), http_bind=f"127.0.0.1:{busy}"
        ) as broker:
            with MqttClient(broker.port, client_id="still-served") as client:
                assert client.connect() == 0
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("mqtt_licensing.web")]
    assert len(lines) == 1 and "HTTP listener not started" in lines[0] and "choose another port" in lines[0]
    assert "\n" not in lines[0]


def test_every_static_file_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["mqtt_licensing.web"]
    root = Path(str(STATIC)).parent
    files = [p.relative_to(root).as_posix() for p in Path(str(STATIC)).rglob("*") if p.is_file()]
    assert "static/vendor/mqtt.min.js" in files
    missing = [f for f in files if not any(fnmatch.fnmatchcase(f, pattern) for pattern in patterns)]
    assert missing == []


def test_vendored_mqttjs_matches_its_recorded_checksum():
    vendor = Path(str(STATIC)) / "vendor"
    record = (vendor / "VERSION").read_text()
    digest = hashlib.sha256((vendor / "mqtt.min.js").read_bytes()).hexdigest()
    assert f"sha256 mqtt.min.js: {digest}" in record
    assert "MIT License" in (vendor / "LICENSE.md").read_text()


def test_without_a_ws_listener_the_page_is_left_out_and_says_why(tmp_path, vendor, caplog):
    caplog.set_level(logging.ERROR, logger="mqtt_licensing.web")
    http_port = free_port()
    with start_broker(tmp_path / "state", vendor=vendor, http_bind=f"127.0.0.1:{http_port}") as broker:
        with MqttClient(broker.port, client_id="still-served") as client:
            assert client.connect() == 0
        base = f"http://127.0.0.1:{http_port}"
        assert httpx.get(f"{base}/", timeout=5).status_code == 404  # no page that could not log in
        assert "mqtt_license_state" in httpx.get(f"{base}/metrics", auth=READER_LOGIN, timeout=5).text  # stays
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("mqtt_licensing.web")]
    assert len(lines) == 1 and "no `ws` listener" in lines[0]


def test_the_broker_serves_the_page_metrics_and_health_on_http_bind(tmp_path, vendor):
    http_port = free_port()
    with start_broker(
        tmp_path / "state", vendor=vendor, ws_port=free_port(), http_bind=f"127.0.0.1:{http_port}", trial_seconds=0
    ):
        base = f"http://127.0.0.1:{http_port}"
        assert "vendor/mqtt.min.js" in httpx.get(f"{base}/", timeout=5).text
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 401  # a reader's business
        assert 'mqtt_license_state{state="unlicensed"} 1.0' in httpx.get(f"{base}/metrics", auth=READER_LOGIN).text
        health = httpx.get(f"{base}/healthz", timeout=5).json()  # the agent's, documented in docs/monitoring.md
        assert health == {"ok": True}  # up; the license state is not the public's


def test_ws_url_must_be_a_websocket_url():
    assert PageConfig(ws_url="wss://plant.example/mqtt").problems() == []
    assert PageConfig(ws_port=9083).problems() == []
    assert "ws_url must start with" in PageConfig(ws_url="http://plant.example/mqtt").problems()[0]


def test_the_ws_listener_carries_the_contract_with_the_same_rights(tmp_path, vendor):
    """amqtt's ws listener: MQTT 3.1.1 over WebSocket, same logins and $license rights as TCP."""
    import json
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.helpers.broker import ADMIN, ADMIN_PASSWORD

    def ws_client(client_id, username=None, password=None):
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, transport="websockets"
        )
        c.ws_set_options(path="/mqtt")
        if username:
            c.username_pw_set(username, password)
        return c

    ws_port = free_port()
    with start_broker(tmp_path / "state", vendor=vendor, ws_port=ws_port, ws_allow_anonymous=True):
        admin = ws_client("ws-admin", ADMIN, ADMIN_PASSWORD)
        replies, granted = [], []
        got_reply, got_suback = threading.Event(), threading.Event()
        admin.on_message = lambda _c, _u, m: (replies.append(json.loads(m.payload)), got_reply.set())
        admin.connect("127.0.0.1", ws_port)
        admin.loop_start()
        try:
            admin.subscribe("$license/reply/ws-admin", 1)
            admin.publish("$license/status", json.dumps({"correlation_id": "ws-1"}), qos=1).wait_for_publish(10)
            assert got_reply.wait(10)
            assert replies[0]["ok"] is True and replies[0]["correlation_id"] == "ws-1"
        finally:
            admin.disconnect()
            admin.loop_stop()

        anonymous = ws_client("ws-anon")
        anonymous.on_subscribe = lambda _c, _u, _m, codes, _p: (granted.extend(codes), got_suback.set())
        anonymous.connect("127.0.0.1", ws_port)
        anonymous.loop_start()
        try:
            anonymous.subscribe("$license/status", 1)
            assert got_suback.wait(10)
            assert granted[0].is_failure  # not a reader: SUBACK 0x80, as over TCP
        finally:
            anonymous.disconnect()
            anonymous.loop_stop()
