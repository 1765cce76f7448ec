"""The operator CLI against a real broker with the licensing agent and a real vendor server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import format_key, mask_key
from tests.cli.conftest import without_progress
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, READER, READER_PASSWORD

SUPPORT_UNTIL = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())


def fields(text: str) -> dict[str, str]:
    """The 'Label: value' lines of a human summary."""
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith(" "):
            label, value = line.split(":", 1)
            out[label.strip()] = value.strip()
    return out


def test_online_flow_from_the_cli(licensing, tmp_path):
    vendor = licensing.vendor
    key = vendor.issue(features=["mqtt_server", "mqtt_server_support"], support_until=SUPPORT_UNTIL, max_connections=50)
    license_id = vendor.license_id(key)
    key_file = tmp_path / "license.txt"
    key_file.write_text(f"\n  {key}  \n\n")

    rc, out, _ = licensing.cli("status")
    assert rc == 0
    assert fields(out)["State"] == "trial (serving)"

    rc, out, err = licensing.cli("activate", "--key-file", str(key_file))
    assert (rc, err) == (0, "")
    shown = fields(out)
    assert out.startswith("Activated (online).")
    assert shown["State"] == "active (serving)"
    assert shown["Features"] == "mqtt_server, mqtt_server_support"
    assert shown["Support until"].startswith("2030-01-01 00:00:00 UTC")
    assert shown["Key"] == mask_key(key)
    assert shown["License"] == license_id
    assert shown["Connections"] == "0 of 50"
    assert shown["Activation"].startswith("act_")
    assert key not in out

    rc, out, _ = licensing.cli("status", "--json")
    assert rc == 0
    reply = json.loads(out)
    assert reply["ok"] is True and reply["operation"] == "status"
    assert reply["status"]["state"] == "active"
    assert reply["status"]["license_id"] == license_id

    vendor.service.update_license(license_id, {"add_features": ["iot_bridge_snowflake"]})
    rc, out, _ = licensing.cli("reactivate")
    assert rc == 0
    assert out.startswith("Reactivated")
    assert "iot_bridge_snowflake" in fields(out)["Features"]

    assert len(vendor.service.list_activations(license_id)) == 1
    rc, out, _ = licensing.cli("deactivate")
    assert rc == 0
    assert out.startswith("Deactivated: the activation")
    assert vendor.service.list_activations(license_id) == []
    assert fields(out)["State"] != "active (serving)"

    rc, _, err = licensing.cli("reactivate")
    assert rc == 1
    assert err.startswith("error [not_activated]: ")


def test_vendor_refusals_exit_non_zero_with_their_code(licensing):
    unknown = format_key(os.urandom(15))
    rc, out, err = licensing.cli("activate", "--key", unknown)
    assert (rc, out) == (1, "")
    assert err.startswith("error [key_not_found]: ")

    key = licensing.vendor.issue()
    licensing.vendor.service.set_status(licensing.vendor.license_id(key), "revoked")
    rc, out, err = licensing.cli("activate", "--key", key, "--json")
    assert rc == 1
    assert json.loads(out)["error"]["code"] == "revoked"
    assert err.startswith("error [revoked]: ")
    rc, out, _ = licensing.cli("status")
    assert fields(out)["State"] == "trial (serving)"


def test_wrong_password_is_not_authorized(licensing):
    rc, out, err = licensing.cli("status", "--username", ADMIN, "--password", "wrong", admin=False)
    assert (rc, out) == (1, "")
    assert err.startswith("error [not_authorized]: ")
    assert "refused the connection" in err and "'admin'" in err
    with pytest.raises(LicensingError) as info:
        with LicenseClient("127.0.0.1", licensing.port, username=READER, password="wrong", timeout=5):
            pass
    assert info.value.code == ErrorCode.NOT_AUTHORIZED
    assert "Not authorized" in info.value.message


def test_non_admin_requests_are_refused_by_the_agent(licensing):
    """A reader may connect and ask for status; its other requests are answered with not_authorized."""
    rc, _, _ = licensing.cli("status", "--username", READER, "--password", READER_PASSWORD, admin=False)
    assert rc == 0
    rc, _, err = licensing.cli("deactivate", "--username", READER, "--password", READER_PASSWORD, admin=False)
    assert rc == 1
    assert err.startswith("error [not_authorized]: only admin clients")
    with LicenseClient("127.0.0.1", licensing.port, username=READER, password=READER_PASSWORD, timeout=5) as reader:
        doc = next(reader.status_updates(idle_timeout=5))
        assert doc["state"] == "trial"


def test_credentials_from_the_environment(licensing, monkeypatch):
    monkeypatch.setenv("MQTT_LICENSING_USERNAME", ADMIN)
    monkeypatch.setenv("MQTT_LICENSING_PASSWORD", ADMIN_PASSWORD)
    rc, out, _ = licensing.cli("status", admin=False)
    assert rc == 0
    assert fields(out)["State"] == "trial (serving)"


def test_client_streams_status_and_events(licensing):
    key = licensing.vendor.issue()
    with licensing.broker.admin() as watcher, licensing.broker.admin() as operator:
        stop = threading.Event()
        states: list[str] = []
        events: list[dict[str, Any]] = []
        threads = [
            threading.Thread(target=watcher.watch_status, args=(lambda d: states.append(d["state"]), stop)),
            threading.Thread(target=lambda: events.extend(watcher.events(stop))),
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while not states and time.monotonic() < deadline:
            time.sleep(0.05)
        assert states == ["trial"]  # the retained document arrives first
        # A refused reactivate is a command_failed event: once one arrives, the subscription is in place.
        while not any(e.get("type") == "command_failed" for e in events) and time.monotonic() < deadline:
            with contextlib.suppress(LicensingError):
                operator.request("reactivate")
            time.sleep(0.05)
        assert any(e.get("type") == "command_failed" for e in events), events
        operator.request("activate", {"method": "online", "license_key": key})
        while (
            "active" not in states or not any(e.get("type") == "activated" for e in events)
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(timeout=5)
        assert not any(t.is_alive() for t in threads)
    assert states[-1] == "active"
    activated = [e for e in events if e.get("type") == "activated"]
    assert activated and activated[0]["method"] == "online"


def test_status_watch_prints_changes_until_ctrl_c(licensing):
    key = licensing.vendor.issue()
    env = {**os.environ, "MQTT_LICENSING_USERNAME": ADMIN, "MQTT_LICENSING_PASSWORD": ADMIN_PASSWORD}
    env["PYTHONFAULTHANDLER"] = "1"
    # As in a terminal: a test run started in the background (`cmd &` in a script) ignores SIGINT,
    # the child would inherit that, and Python installs no KeyboardInterrupt handler then.
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqtt_licensing.cli.main", "status", "--watch", "--json", "--port", str(licensing.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["state"] == "trial"
        with licensing.broker.admin() as operator:
            operator.request("activate", {"method": "online", "license_key": key})
        while True:  # intermediate documents are allowed; the watch must reach "active"
            doc = json.loads(proc.stdout.readline())
            if doc["state"] == "active":
                break
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # hung on Ctrl-C: fail with where each thread was
            proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER prints every thread's stack
            proc.wait(timeout=10)
            pytest.fail(f"status --watch did not end on SIGINT:\n{proc.stderr.read()[-6000:]}")  # type: ignore[union-attr]
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_offline_round_trip_with_codes_in_files(tmp_path, capsys):
    """Offline flow as an operator does it, with no vendor server reachable from the broker."""
    from mqtt_licensing.cli.main import main
    from tests.helpers.activation import start_vendor
    from tests.helpers.broker import start_broker

    with start_vendor(tmp_path / "vendor") as vendor:
        key = vendor.issue(features=["mqtt_server"], model="offline")
        license_id = vendor.license_id(key)
        public_key = vendor.public_key_text
        vendor.stop()  # the vendor's desk: only its data folder and CLI from here on
        vendor_data = str(vendor.data_dir)
        with start_broker(tmp_path / "state", vendor_url=None, vendor_public_key=public_key) as broker:
            conn = ["--port", str(broker.port), "--username", ADMIN, "--password", ADMIN_PASSWORD]

            def cli(*argv: str) -> tuple[int, str, str]:
                capsys.readouterr()
                rc = main(list(argv))
                out = capsys.readouterr()
                return rc, out.out, out.err

            key_file, request, usage = tmp_path / "key.txt", tmp_path / "request.txt", tmp_path / "usage.txt"
            key_file.write_text(key + "\n")
            rc, out, _ = cli("offline-request", "--key-file", str(key_file), "--out", str(request), *conn)
            assert rc == 0
            assert "invalidates the previous one" in out and "send" in out.lower()
            assert request.read_text().startswith("-----BEGIN MQTT LICENSING USAGE REQUEST-----")

            rc, out, err = cli("offline-request", "--key-file", str(key_file), *conn)  # printed, supersedes
            assert rc == 0 and out.startswith("-----BEGIN") and "invalidates the previous one" in err
            rc, _, _ = cli("offline-request", "--key-file", str(key_file), "--out", str(request), *conn)
            assert rc == 0

            assert (
                cli(
                    "vendor", "offline-activate", "--data", vendor_data, "--request", str(request), "--out", str(usage)
                )[0]
                == 0
            )
            rc, out, _ = cli("activate", "--usage-license-file", str(usage), *conn)
            assert rc == 0
            assert out.startswith("Activated (offline).")
            assert fields(out)["State"] == "active (serving)"
            assert fields(out)["Model"] == "offline"

            rc, _, err = cli("reactivate", *conn)
            assert rc == 1 and err.startswith("error [offline_license_cannot_reactivate]: ")

            code_file = tmp_path / "deactivation.txt"
            rc, out, _ = cli("deactivate", "--out", str(code_file), *conn)
            assert rc == 0
            assert "OFFLINE DEACTIVATION CODE: send it to your vendor" in out
            code = code_file.read_text()
            assert code.startswith("-----BEGIN MQTT LICENSING DEACTIVATION CODE-----")
            assert code.strip() in out
            rc, out, _ = cli("status", *conn)  # a lost reply is not a lost code
            assert code.strip() in out

            assert len(vendor.service.list_activations(license_id)) == 1
            rc, out, _ = cli("vendor", "offline-deactivate", "--data", vendor_data, "--code", str(code_file))
            assert rc == 0 and "freed" in out
            assert vendor.service.list_activations(license_id) == []


def test_floating_activation_from_the_cli(tmp_path, capsys):
    """Two brokers, one seat: the second is refused until the first deactivates and returns it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mqtt_licensing.cli.main import main
    from mqtt_licensing.core.signing import public_key_to_text
    from tests.helpers.broker import start_broker
    from tests.helpers.floating import start_floating

    vendor_key = Ed25519PrivateKey.generate()
    fls = start_floating(tmp_path / "fls", vendor_key=vendor_key, seats=1, features=["mqtt_server"])
    try:
        pinned = public_key_to_text(vendor_key.public_key())
        with (
            start_broker(tmp_path / "a", vendor_url=None, vendor_public_key=pinned) as a,
            start_broker(tmp_path / "b", vendor_url=None, vendor_public_key=pinned) as b,
        ):

            def cli(broker, *argv: str) -> tuple[int, str, str]:
                capsys.readouterr()
                rc = main([*argv, "--port", str(broker.port), "--username", ADMIN, "--password", ADMIN_PASSWORD])
                out = capsys.readouterr()
                return rc, out.out, without_progress(out.err)

            activate = ("activate", "--floating", fls.url, "--features", "mqtt_server")
            rc, out, _ = cli(a, *activate)
            assert rc == 0
            assert out.startswith("Activated (floating).")
            assert fields(out)["State"] == "active (serving)"
            assert fields(out)["Model"] == "floating"
            assert f"server: {fls.url}" in fields(out)["Floating"]

            rc, _, err = cli(b, *activate)
            assert rc == 1 and err.startswith("error [no_seats]: ")

            rc, out, _ = cli(a, "deactivate")
            assert rc == 0 and out.startswith("Deactivated: the activation (or floating seat) is free")
            rc, out, _ = cli(b, *activate)
            assert rc == 0 and fields(out)["State"] == "active (serving)"
    finally:
        fls.stop()
