"""`$license/events/recent` keeps what matters: a flood of refused CONNECTs never pushes a
license transition out, and the events survive a broker restart (with a broker_started event)."""

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent.publisher import RECENT_EVENTS, Publisher
from mqtt_licensing.core.signing import public_key_to_text
from tests.helpers.broker import RawClient, start_broker

PUB = public_key_to_text(Ed25519PrivateKey.generate())  # no vendor: nothing is activated


def _recent(broker) -> list[dict[str, Any]]:
    with broker.admin() as admin:
        return admin.recent_events()


def _failed_request(broker) -> None:
    from mqtt_licensing.core.errors import LicensingError

    with broker.admin() as admin:
        try:
            admin.request("reactivate")
        except LicensingError as exc:
            assert exc.code == "not_activated"


def test_refused_connects_do_not_push_transitions_out(tmp_path):
    with start_broker(tmp_path / "state", vendor_url=None, vendor_public_key=PUB, trial_seconds=0) as broker:
        _failed_request(broker)  # a command_failed event, then the flood
        for i in range(RECENT_EVENTS + 20):  # anonymous while the license does not serve: not_licensed
            with RawClient(broker.port) as raw:
                assert raw.connect(f"fleet-{i}") == 5
        events = _recent(broker)
    kinds = [e["type"] for e in events]
    assert "command_failed" in kinds, kinds[:5]
    refused = [e for e in events if e["type"] == "connection_refused"]
    assert 1 <= len(refused) <= 2 and refused[0]["reason"] == "not_licensed", refused


def test_a_refusal_flood_of_many_names_keeps_transitions():
    now = [1000.0]
    out = Publisher(lambda: now[0])
    out.emit("state_changed", state="active")
    for i in range(RECENT_EVENTS * 2):
        now[0] += 0.01
        out.emit("connection_refused", username=f"guess-{i}", reason="bad_credentials")
    kept = out.recent()
    assert kept[0]["type"] == "state_changed"
    assert len(kept) < RECENT_EVENTS and kept[-1]["username"] == f"guess-{RECENT_EVENTS * 2 - 1}"


def test_recent_events_survive_a_restart(tmp_path):
    with start_broker(tmp_path / "state", vendor_url=None, vendor_public_key=PUB) as broker:
        _failed_request(broker)
        broker.restart()
        kinds = [e["type"] for e in _recent(broker)]
        assert kinds.count("broker_started") == 2 and "command_failed" in kinds, kinds
        assert kinds.index("command_failed") < len(kinds) - 1 - kinds[::-1].index("broker_started")
        broker.stop()
        (tmp_path / "state" / "events.json").write_text("{damaged")
        broker.start()
        assert [e["type"] for e in _recent(broker)] == ["broker_started"]
