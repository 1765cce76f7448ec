"""Webhooks from a real `vendor serve` process: once per webhook-id across a kill -9 mid-delivery,
and a receiver that never answers costs the server's requests nothing.

Standard Webhooks promise at-least-once delivery: a receiver may see a message twice and
de-duplicates by ``webhook-id``, so what must hold is that every event arrives, and that one
event never arrives under two ids (the receiver could not tell the second from a new event).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.servers.activation import ActivationService
from mqtt_licensing.servers.webhooks import Webhooks
from mqtt_licensing.servers.webhooks import signing as hooks
from tests.helpers.broker import wait_for

from .support import VendorProcess

pytestmark = pytest.mark.timeout(90)


class HoldingReceiver:
    """Records each arrival's webhook-id, then answers 204 only once ``release`` is set (or at once
    when ``hold`` is off); an answer to a killed sender goes nowhere."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, bytes, dict[str, str]]] = []
        self.acked: list[str] = []
        self.hold = True
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.arrivals.append((headers["webhook-id"], body, headers))
                if receiver.hold:
                    receiver.release.wait(30)
                try:
                    self.send_response(204)
                    self.end_headers()
                    receiver.acked.append(headers["webhook-id"])
                except OSError:
                    pass  # the sender is gone (kill -9): this answer reaches nobody

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _setup(data: Path, url: str, licenses: int) -> tuple[str, list[str]]:
    service = ActivationService.open(data)
    try:
        secret = Webhooks(service.store.engine).add(url, ["license.created"], int(time.time()))["secret"]
        ids = [service.issue_license(features=["mqtt_server"])[0]["id"] for _ in range(licenses)]
    finally:
        service.close()
    return secret, ids


def test_each_event_arrives_under_one_id_across_a_kill_9_mid_delivery(tmp_path):
    receiver = HoldingReceiver()
    data = tmp_path / "vendor"
    vendor = VendorProcess(data, extra=("--webhook-timeout", "3"))  # a claim lasts 9 s
    secret, licenses = _setup(data, receiver.url, 3)
    try:
        vendor.start()
        wait_for(lambda: len(receiver.arrivals) >= 3, timeout=20, message="three deliveries in flight")
        vendor.kill9()  # mid-delivery: the receiver holds every answer
        receiver.hold = False
        receiver.release.set()  # the receiver acks after the kill: nobody hears it
        in_flight = len(receiver.arrivals)
        vendor.start()
        wait_for(
            lambda: (
                {json.loads(b)["data"]["license_id"] for i, b, _h in receiver.arrivals[in_flight:]} == set(licenses)
            ),
            timeout=40,
            message="every event sent again after the restart",
        )
        wait_for(lambda: len(set(receiver.acked)) >= 3, timeout=20, message="each acknowledged")
        ids_of: dict[str, set[str]] = defaultdict(set)
        for msg_id, body, headers in receiver.arrivals:
            assert hooks.verify(secret, headers, body, now=int(time.time())) == msg_id
            ids_of[json.loads(body)["data"]["license_id"]].add(msg_id)
        assert set(ids_of) == set(licenses)
        assert all(len(ids) == 1 for ids in ids_of.values()), ids_of  # a retry never takes a new id
        assert len({next(iter(ids)) for ids in ids_of.values()}) == 3  # ... nor another event's
        print(f"arrivals {len(receiver.arrivals)} for 3 events ({in_flight} before the kill)")
    finally:
        vendor.terminate()
        receiver.close()


def _issue_times(url: str, token: str, n: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
        for _ in range(n):
            started = time.perf_counter()
            client.post("/v1/admin/licenses", json={"features": ["mqtt_server"]}).raise_for_status()
            times.append(time.perf_counter() - started)
    return times


def test_a_receiver_that_never_answers_costs_requests_nothing(tmp_path):
    """Each request queues a webhook to a receiver that holds every delivery until the end."""
    receiver = HoldingReceiver()
    data = tmp_path / "vendor"
    ActivationService.open(data).close()  # the data folder, with no webhook yet
    vendor = VendorProcess(data).start()  # the default 10 s receiver timeout
    try:
        token = (data / "admin.token").read_text().strip()
        without = _issue_times(vendor.url, token, 30)
        service = ActivationService.open(data)
        try:
            Webhooks(service.store.engine).add(receiver.url, ["license.created"], int(time.time()))
        finally:
            service.close()
        with_hanging = _issue_times(vendor.url, token, 30)
        wait_for(lambda: receiver.arrivals, timeout=10, message="the deliverer reached the receiver")
        more = _issue_times(vendor.url, token, 10)  # while deliveries hang
        assert not receiver.acked  # every request above completed while the receiver still hung
        p50 = [statistics.median(t) * 1000 for t in (without, with_hanging + more)]
        print(f"admin issue p50: {p50[0]:.1f} ms without a receiver, {p50[1]:.1f} ms with one that hangs")
    finally:
        vendor.terminate()
        receiver.close()
