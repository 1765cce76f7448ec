"""The operator client's failure modes that need no licensing agent: every wait is bounded."""

from __future__ import annotations

import threading
import time

import pytest

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.clients.wire import TOPICS, operation_topic
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.protocol import OPERATIONS
from mqtt_licensing.servers._run import free_port


def test_operation_topics_come_from_the_protocol():
    assert set(TOPICS.values()) == set(OPERATIONS)
    for topic, operation in OPERATIONS.items():
        assert operation_topic(operation) == topic
    assert operation_topic("offline-request") == operation_topic("offline/request") == "$license/offline/request"
    with pytest.raises(LicensingError) as info:
        operation_topic("selfdestruct")
    assert info.value.code == ErrorCode.UNKNOWN_OPERATION


def test_client_id_that_could_read_other_replies_is_refused_locally():
    with pytest.raises(LicensingError) as info:
        LicenseClient(client_id="a/+")
    assert info.value.code == ErrorCode.INVALID_FIELD


def test_no_broker_is_server_unreachable():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(LicensingError) as info, LicenseClient(port=port, timeout=5):
        pass
    assert info.value.code == ErrorCode.SERVER_UNREACHABLE
    assert f"127.0.0.1:{port}" in info.value.message
    assert time.monotonic() - started < 3


def test_no_connack_times_out(silent_server):
    started = time.monotonic()
    with pytest.raises(LicensingError) as info, LicenseClient(port=silent_server, timeout=1.0):
        pass
    elapsed = time.monotonic() - started
    assert info.value.code == ErrorCode.SERVER_UNREACHABLE
    assert "timed out" in info.value.message and "CONNACK" in info.value.message
    assert 0.9 <= elapsed < 4


def test_no_agent_reply_times_out(bare_broker):
    baseline = threading.active_count()
    client = LicenseClient(port=bare_broker, timeout=1.0)
    with client:
        started = time.monotonic()
        with pytest.raises(LicensingError) as info:
            client.request("status")
        elapsed = time.monotonic() - started
    assert info.value.code == ErrorCode.SERVER_UNREACHABLE
    assert "timed out after 1 s waiting for a reply to 'status'" in info.value.message
    assert 0.9 <= elapsed < 3
    deadline = time.monotonic() + 3  # the network thread ends with close()
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == baseline
    with pytest.raises(LicensingError) as after:
        client.request("status")
    assert after.value.code == ErrorCode.SERVER_UNREACHABLE


def test_per_request_timeout_overrides_the_default(bare_broker):
    with LicenseClient(port=bare_broker, timeout=10) as client:
        started = time.monotonic()
        with pytest.raises(LicensingError) as info:
            client.request("status", timeout=0.5)
    assert "timed out after 0.5 s" in info.value.message
    assert time.monotonic() - started < 3


def test_status_stream_stops_when_idle_or_told(bare_broker):
    with LicenseClient(port=bare_broker, timeout=5) as client:
        started = time.monotonic()
        assert list(client.status_updates(idle_timeout=0.5)) == []
        assert 0.4 <= time.monotonic() - started < 3
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        client.watch_status(lambda doc: None, stop)
        assert time.monotonic() - started < 2
        assert list(client.events(idle_timeout=0.3)) == []


def test_cli_reports_the_timeout_and_exits_non_zero(bare_broker, capsys):
    rc = main(["status", "--port", str(bare_broker), "--timeout", "1"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error [server_unreachable]: timed out after 1 s waiting for a reply")


def test_cli_no_broker_exits_non_zero(capsys):
    rc = main(["reactivate", "--port", str(free_port()), "--json"])
    captured = capsys.readouterr()
    assert rc == 1
    assert '"code": "server_unreachable"' in captured.out
    assert "error [server_unreachable]" in captured.err
