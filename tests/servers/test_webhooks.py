"""The webhook outbox against a real HTTP receiver: signed, retried under one id, never blocking."""

import asyncio
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mqtt_licensing.servers._db import create_db_engine, sqlite_url
from mqtt_licensing.servers.webhooks import Deliverer, Webhooks, emit
from mqtt_licensing.servers.webhooks import signing as hooks
from mqtt_licensing.servers.webhooks.store import RETRY_FOR


class Receiver:
    """An HTTP server on 127.0.0.1:0 that fails the first ``failures`` requests with 503."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                ok = len(receiver.received) > receiver.failures
                self.send_response(204 if ok else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhooks(tmp_path: Path):
    engine = create_db_engine(sqlite_url(tmp_path, "server.db"))
    hooks_ = Webhooks(engine)
    hooks_.migrate()
    yield hooks_
    engine.dispose()


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_an_event_is_signed_and_retried_under_one_id_until_the_receiver_takes_it(webhooks):
    receiver = Receiver(failures=3)
    clock = FakeClock()
    try:
        endpoint = webhooks.add(receiver.url, ["license.created"], int(clock()))
        assert endpoint["secret"].startswith("whsec_")
        assert webhooks.emit("license.created", {"license_id": "lic_1"}, int(clock())) == 1
        assert webhooks.emit("license.revoked", {"license_id": "lic_1"}, int(clock())) == 0  # not subscribed
        deliverer = Deliverer(webhooks, clock=clock)
        async with deliverer.client() as client:
            for _ in range(6):
                await deliverer.step(client)
                clock.now += 3600
        ids = {headers["webhook-id"] for headers, _ in receiver.received}
        assert len(receiver.received) == 4 and len(ids) == 1
        headers, body = receiver.received[-1]
        assert hooks.verify(endpoint["secret"], headers, body, now=int(headers["webhook-timestamp"])) in ids
        assert json.loads(body) == {
            "type": "license.created",
            "timestamp": json.loads(body)["timestamp"],
            "data": {"license_id": "lic_1"},
        }
        (delivery,) = webhooks.deliveries()
        assert delivery["state"] == "delivered" and delivery["attempts"] == 4 and delivery["last_status"] == 204
    finally:
        receiver.close()


async def test_a_receiver_that_never_answers_is_given_up_after_a_day(webhooks):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    clock = FakeClock()
    try:
        webhooks.add(f"http://127.0.0.1:{silent.getsockname()[1]}/", [], int(clock()))
        webhooks.emit("trial.started", {"instance": "f"}, int(clock()))
        deliverer = Deliverer(webhooks, clock=clock, send_timeout=0.05)  # ~24 attempts, each waits this long
        async with deliverer.client() as client:
            while webhooks.deliveries()[0]["state"] == "pending" and clock.now < 1_000_000 + 2 * RETRY_FOR:
                await deliverer.step(client)
                clock.now += 3600
        (delivery,) = webhooks.deliveries()
        assert delivery["state"] == "given_up" and "Timeout" in delivery["last_error"]
    finally:
        silent.close()


def test_payloads_never_carry_secrets(webhooks):
    webhooks.add("http://127.0.0.1:9/", [], 1)
    with webhooks.engine.begin() as conn, pytest.raises(ValueError, match="license_key"):
        emit(conn, "license.created", {"license": {"license_key": "K"}}, 1)


def test_bad_endpoints_are_refused_in_one_line(webhooks):
    with pytest.raises(Exception, match="http"):
        webhooks.add("ftp://example/", [], 1)
    with pytest.raises(Exception, match="unknown webhook event"):
        webhooks.add("http://127.0.0.1/", ["license.exploded"], 1)


async def test_two_deliverers_never_send_one_row_twice_at_once(webhooks):
    receiver = Receiver()
    try:
        webhooks.add(receiver.url, [], 1)
        for n in range(10):
            webhooks.emit("activation.created", {"activation_id": f"a{n}"}, 1)
        one, two = Deliverer(webhooks, clock=lambda: 5), Deliverer(webhooks, clock=lambda: 5)
        async with one.client() as c1, two.client() as c2:
            sent = await asyncio.gather(one.step(c1), two.step(c2))
        assert sum(sent) == 10 and len(receiver.received) == 10
    finally:
        receiver.close()


def test_the_migration_builds_the_tables_exactly_as_declared(webhooks):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from mqtt_licensing.servers.webhooks import schema

    with webhooks.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": schema.SCHEMA.version_table})
        assert compare_metadata(context, schema.metadata) == []
