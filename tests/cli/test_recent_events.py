"""``$license/events/recent`` and ``mqtt-licensing events --since``: the agent keeps its latest
events in a bounded ring, so a follower that starts late still sees what just happened."""

import subprocess
import sys

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent.publisher import RECENT_EVENTS, Publisher
from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.signing import public_key_to_text
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, READER, READER_PASSWORD, start_broker
from tests.helpers.cli import run_cli

CLI = [sys.executable, "-m", "mqtt_licensing.cli.main"]


def test_the_ring_is_bounded_and_filtered_by_age():
    now = [1000.0]
    out = Publisher(lambda: now[0])
    for i in range(RECENT_EVENTS + 50):
        now[0] += 1
        out.emit("tick", n=i)
    kept = out.recent()
    assert len(kept) == RECENT_EVENTS and kept[0]["n"] == 50 and kept[-1]["n"] == RECENT_EVENTS + 49
    assert [e["n"] for e in out.recent(since=2)] == [RECENT_EVENTS + 47, RECENT_EVENTS + 48, RECENT_EVENTS + 49]


def test_events_since_shows_what_happened_before_it_started(tmp_path):
    pub = public_key_to_text(Ed25519PrivateKey.generate())  # no vendor is needed: nothing is activated
    with start_broker(tmp_path / "state", vendor_url=None, vendor_public_key=pub) as broker:
        login = ["-p", str(broker.port), "-u", ADMIN, "-P", ADMIN_PASSWORD]
        failed = run_cli("reactivate", *login)
        assert failed.returncode == 1 and "not_activated" in failed.stderr
        follower = subprocess.Popen(
            [*CLI, "events", *login, "--since", "10m"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert follower.stdout is not None
            assert "broker_started" in follower.stdout.readline()  # the backlog comes first
            line = follower.stdout.readline()
            assert "command_failed" in line and "not_activated" in line, line
        finally:
            follower.terminate()
            follower.wait(timeout=10)

        with LicenseClient("127.0.0.1", broker.port, username=READER, password=READER_PASSWORD) as reader:
            kinds = [e["type"] for e in reader.recent_events()]
            assert "command_failed" in kinds
            with pytest.raises(LicensingError) as refused:
                reader.request("reactivate")
            assert refused.value.code == "not_authorized"
            with pytest.raises(LicensingError) as bad:
                reader.request("events_recent", {"since": "ten minutes"})
            assert bad.value.code == "invalid_field"
        with LicenseClient("127.0.0.1", broker.port, client_id="plant-1") as anonymous:
            with pytest.raises(LicensingError) as refused:
                anonymous.recent_events()
            assert refused.value.code == "not_authorized"


def test_recent_events_in_msgpack_survive_text_that_only_json_can_carry():
    from mqtt_licensing.core import protocol

    event = {"type": "command_failed", "correlation_id": "x\ud800y"}  # a lone surrogate, valid in JSON
    request = protocol.Request(protocol.Operation.EVENTS_RECENT, "msgpack")
    reply = msgpack.unpackb(protocol.success_reply(request, {"events": [event]}), raw=False)
    assert reply["events"] == [{"type": "command_failed", "correlation_id": "x?y"}]
