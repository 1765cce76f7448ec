"""Webhooks from a running activation server: events of real changes arrive signed, and a receiver
that never answers holds up no request."""

import json
import socket
import time

from mqtt_licensing.servers.webhooks import Webhooks
from mqtt_licensing.servers.webhooks import signing as hooks
from tests.helpers.broker import wait_for
from tests.servers.test_webhooks import Receiver


def test_license_and_activation_events_arrive_signed(vendor):
    receiver = Receiver()
    try:
        endpoint = Webhooks(vendor.service.store.engine).add(receiver.url, [], int(time.time()))
        lic, _key = vendor.issue_license(features=["mqtt_server"])
        vendor.service.set_status(lic["id"], "suspended")
        vendor.service.set_status(lic["id"], "active")
        wait_for(lambda: len(receiver.received) >= 3, timeout=20, message="three webhooks")
        events = []
        for headers, body in receiver.received:
            hooks.verify(endpoint["secret"], headers, body, now=int(time.time()))
            events.append(json.loads(body))
        # sent side by side: each carries its own time, the arrival order is not promised
        assert sorted(e["type"] for e in events) == ["license.created", "license.reinstated", "license.suspended"]
        assert all(e["data"]["license_id"] == lic["id"] for e in events)
        assert "key" not in json.dumps(events).replace("key_mask", "")  # never a license key
    finally:
        receiver.close()


def test_a_receiver_that_never_answers_holds_up_no_request(vendor):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        Webhooks(vendor.service.store.engine).add(f"http://127.0.0.1:{silent.getsockname()[1]}/", [], int(time.time()))
        vendor.issue_license(features=["mqtt_server"])
        # the deliverer has connected and waits for an answer that never comes ...
        wait_for(lambda: silent.accept() is not None, timeout=20, message="the deliverer connects")
        # ... while the server keeps answering requests at once
        import httpx

        for _ in range(5):
            assert httpx.get(f"{vendor.url}/v1/health", timeout=5).json()["ok"] is True
        vendor.issue_license(features=["mqtt_server"])
        (pending, *_rest) = Webhooks(vendor.service.store.engine).deliveries()
        assert pending["state"] == "pending"
    finally:
        silent.close()
