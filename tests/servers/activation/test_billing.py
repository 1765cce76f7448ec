"""Billing usage through Stripe (issue 16) with the official library, against a local HTTP server
that records the exact requests it sends: method, path, parameters, Idempotency-Key."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mqtt_licensing.cli.main import main
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers.activation.billing import idempotency_key, report_day
from tests.helpers.activation import VendorHandle

from .test_usage import activated, record, report

DAY = "2026-11-01"
DAY_START = 1_793_491_200  # 2026-11-01 00:00 UTC


class StripeRecorder:
    """Answers like Stripe's meter events endpoint; ``fail_first`` answers 500 that many times."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first = fail_first
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                recorder.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "params": dict(urllib.parse.parse_qsl(body)),
                        "idempotency_key": self.headers.get("Idempotency-Key"),
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                if recorder.fail_first > 0:
                    recorder.fail_first -= 1
                    self._answer(500, {"error": {"type": "api_error", "message": "try again"}})
                    return
                params = recorder.requests[-1]["params"]
                self._answer(
                    200,
                    {
                        "object": "billing.meter_event",
                        "event_name": params.get("event_name"),
                        "identifier": params.get("identifier"),
                        "created": int(time.time()),
                        "livemode": False,
                        "payload": {"value": params.get("payload[value]")},
                        "timestamp": int(params.get("timestamp", 0)),
                    },
                )

            def _answer(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stripe_server() -> Iterator[StripeRecorder]:
    server = StripeRecorder()
    yield server
    server.close()


def usage_on_day(vendor: VendorHandle) -> str:
    inst, act, lic = activated(vendor)
    report(vendor, inst, act, [record(inst, 1, start=DAY_START, messages=5), record(inst, 2, start=DAY_START + 7200)])
    return lic


def bill(vendor: VendorHandle, lic: str, url: str, day: str = DAY) -> dict[str, Any]:
    return report_day(
        vendor.service,
        lic,
        day,
        customer="cus_123",
        event_name="iot_bridge_messages",
        api_key="sk_test_1",
        api_base=url,
    )


def test_one_meter_event_per_license_and_day_with_a_derived_idempotency_key(vendor, stripe_server) -> None:
    lic = usage_on_day(vendor)
    sent = bill(vendor, lic, stripe_server.url)
    assert sent["value"] == 15 and sent["already_reported"] is False
    (request,) = stripe_server.requests
    key = idempotency_key(lic, DAY, "messages")
    assert request == {
        "method": "POST",
        "path": "/v1/billing/meter_events",
        "params": {
            "event_name": "iot_bridge_messages",
            "identifier": key,
            "timestamp": str(DAY_START + 86400 - 1),
            "payload[stripe_customer_id]": "cus_123",
            "payload[value]": "15",
        },
        "idempotency_key": key,
        "authorization": "Bearer sk_test_1",
    }
    assert bill(vendor, lic, stripe_server.url)["already_reported"] is True  # run twice: billed once
    assert len(stripe_server.requests) == 1
    assert idempotency_key(lic, "2026-11-02", "messages") != key


def test_a_retry_after_a_failure_carries_the_same_key(vendor) -> None:
    lic = usage_on_day(vendor)
    flaky = StripeRecorder(fail_first=1)
    try:
        bill(vendor, lic, flaky.url)
    finally:
        flaky.close()
    assert len(flaky.requests) == 2
    assert {r["idempotency_key"] for r in flaky.requests} == {idempotency_key(lic, DAY, "messages")}


def test_a_day_not_over_is_not_billed(vendor, stripe_server) -> None:
    lic = usage_on_day(vendor)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    with pytest.raises(LicensingError) as err:
        bill(vendor, lic, stripe_server.url, day=today)
    assert err.value.code == ErrorCode.BAD_REQUEST and stripe_server.requests == []


def test_cli_bill_takes_the_key_from_the_environment(vendor, stripe_server, monkeypatch, capsys) -> None:
    lic = usage_on_day(vendor)
    args = ["vendor", "bill", lic, "--data", str(vendor.data_dir), "--day", DAY, "--customer", "cus_9"]
    args += ["--event-name", "bridge_msgs", "--api-base", stripe_server.url, "--json"]
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    assert main(args) != 0 and stripe_server.requests == []
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_env")
    capsys.readouterr()
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["value"] == 15
    assert stripe_server.requests[0]["authorization"] == "Bearer sk_test_env"
