"""The $license contract driven by the stock Mosquitto clients (Debian package mosquitto-clients).

* ``mosquitto_rr -V mqttv311`` is one client that subscribes to the reply topic and then
  publishes the request: the straightforward request/reply tool.
* ``mosquitto_sub`` + ``mosquitto_pub`` are two clients. A client may read only its own
  replies (``$license/reply/<its client id>``), so both must use the same client id; the
  second CONNECT takes the session over, and only a persistent session (``-c``) keeps
  the reply subscription alive across that take-over.
* ``mosquitto_sub`` as a dashboard reads the retained ``$license/status`` and ``$license/events``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any

import msgpack
import pytest

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, READER, READER_PASSWORD

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_rr") is None or shutil.which("mosquitto_sub") is None,
    reason="needs the mosquitto-clients package",
)


# mosquitto_sub -d writes its debug lines with stdio buffering; a pipe would hold them back
LINE_BUFFERED = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []


def mosquitto_args(port: int, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(port), "-u", user, "-P", password, "-V", "mqttv311"]


def rr(port: int, client_id: str, topic: str, payload: bytes, *, raw: bool = False) -> Any:
    """One request with mosquitto_rr; the decoded reply (JSON, or msgpack when raw).

    The payload goes in with -m: mosquitto_rr 2.0.11 sends an empty payload for -f/-s with -V mqttv311.
    """
    proc = subprocess.run(
        [
            "mosquitto_rr",
            *mosquitto_args(port),
            "-i",
            client_id,
            "-q",
            "1",
            "-t",
            topic,
            "-e",
            f"$license/reply/{client_id}",
            "-W",
            "10",
            "-N",
            "-m",
            payload,
        ],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return msgpack.unpackb(proc.stdout) if raw else json.loads(proc.stdout)


def test_mosquitto_rr_drives_the_online_flow(licensing):
    vendor, port = licensing.vendor, licensing.port
    key = vendor.issue(features=["mqtt_server"])

    reply = rr(port, "ops", "$license/status", b'{"correlation_id": "s1"}')
    assert (reply["ok"], reply["correlation_id"], reply["status"]["state"]) == (True, "s1", "trial")

    reply = rr(
        port,
        "ops",
        "$license/activate",
        json.dumps({"correlation_id": 7, "method": "online", "license_key": key}).encode(),
    )
    assert (reply["ok"], reply["correlation_id"], reply["status"]["state"]) == (True, 7, "active")
    assert key not in json.dumps(reply)

    vendor.service.update_license(vendor.license_id(key), {"add_features": ["iot_bridge_snowflake"]})
    reply = rr(port, "ops", "$license/reactivate", b"{}")
    assert reply["ok"] and "iot_bridge_snowflake" in reply["status"]["features"]

    reply = rr(port, "ops", "$license/status", msgpack.packb({"correlation_id": "m1"}), raw=True)
    assert (reply["ok"], reply["correlation_id"], reply["status"]["state"]) == (True, "m1", "active")

    reply = rr(port, "ops", "$license/deactivate", b"{}")
    assert reply["ok"] is True
    assert vendor.service.list_activations(vendor.license_id(key)) == []

    reply = rr(port, "ops", "$license/reactivate", b'{"correlation_id": "x"}')
    assert reply == {
        "ok": False,
        "operation": "reactivate",
        "correlation_id": "x",
        "error": {"code": "not_activated", "message": reply["error"]["message"]},
    }


def _lines_until(proc: subprocess.Popen[Any], predicate: Any, timeout: float = 15) -> list[str]:
    """Read stdout lines of a running mosquitto_sub until predicate(line) holds."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"mosquitto_sub ended early: {lines} {proc.stderr.read()}")
        lines.append(line.rstrip("\n"))
        if predicate(lines[-1]):
            return lines
    raise AssertionError(f"not seen in time: {lines}")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_mosquitto_pub_request_seen_by_mosquitto_sub_dashboards(licensing):
    port = licensing.port
    key = licensing.vendor.issue(features=["mqtt_server"])
    reader = mosquitto_args(port, READER, READER_PASSWORD)
    status = subprocess.Popen(
        ["mosquitto_sub", *reader, "-i", "dash-status", "-t", "$license/status", "-W", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events = subprocess.Popen(
        [*LINE_BUFFERED, "mosquitto_sub", *reader, "-d", "-i", "dash-events", "-t", "$license/events", "-W", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = _lines_until(status, lambda line: line.startswith("{"))
        assert json.loads(first[-1])["state"] == "trial"  # the retained document
        _lines_until(events, lambda line: "SUBACK" in line)
        subprocess.run(
            [
                "mosquitto_pub",
                *mosquitto_args(port),
                "-i",
                "ops-pub",
                "-q",
                "1",
                "-t",
                "$license/activate",
                "-m",
                json.dumps({"license_key": key}),
            ],
            check=True,
            capture_output=True,
            timeout=20,
        )
        _lines_until(status, lambda line: line.startswith("{") and json.loads(line).get("state") == "active")
        seen = _lines_until(events, lambda line: line.startswith("{") and json.loads(line).get("type") == "activated")
        assert json.loads(seen[-1])["method"] == "online"
    finally:
        _stop(status)
        _stop(events)


def test_mosquitto_sub_and_pub_sharing_a_persistent_client_id_get_the_reply(licensing):
    """Two processes, one client id: mosquitto_pub's CONNECT takes the session over from mosquitto_sub,
    which reconnects; with -c the reply to a slow request (activate: a vendor round trip) must wait
    in the session until then."""
    port = licensing.port
    key = licensing.vendor.issue(features=["mqtt_server"])
    sub = subprocess.Popen(
        [
            *LINE_BUFFERED,
            "mosquitto_sub",
            *mosquitto_args(port),
            "-d",
            "-c",
            "-q",
            "1",
            "-i",
            "ops",
            "-t",
            "$license/reply/ops",
            "-C",
            "1",
            "-W",
            "6",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _lines_until(sub, lambda line: "SUBACK" in line)
        subprocess.run(
            [
                "mosquitto_pub",
                *mosquitto_args(port),
                "-c",
                "-q",
                "1",
                "-i",
                "ops",
                "-t",
                "$license/activate",
                "-m",
                json.dumps({"correlation_id": "a1", "license_key": key}),
            ],
            check=True,
            capture_output=True,
            timeout=20,
        )
        lines = _lines_until(sub, lambda line: line.startswith("{"))
        reply = json.loads(lines[-1])
        assert (reply["ok"], reply["correlation_id"], reply["status"]["state"]) == (True, "a1", "active")
        assert sub.wait(timeout=10) == 0
    finally:
        _stop(sub)
