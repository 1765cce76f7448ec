"""Heartbeats end to end: a real broker with the agent, a real vendor server over HTTP, one fake
clock shared by both (the agent ticks by hand; the vendor's release duty reads the same clock)."""

from __future__ import annotations

import json
from typing import Any

from mqtt_licensing.core.state import RELEASED_GRACE, RELEASED_STOPPED
from tests.helpers.activation import VendorHandle, start_vendor
from tests.helpers.broker import MqttClient, start_broker
from tests.helpers.fakeclock import FakeClock

TERMS = {"heartbeat_interval": 10, "release_after": 30}


def _setup(tmp_path: Any, clock: FakeClock, **license: Any) -> tuple[VendorHandle, str]:
    vendor = start_vendor(tmp_path / "vendor", clock=clock.seconds)
    _lic, key = vendor.service.issue_license(features=["mqtt_server"], **TERMS, **license)
    return vendor, key


def _ticking(broker: Any, clock: FakeClock) -> Any:
    broker.agent.clock = clock

    def tick(seconds: float) -> dict[str, Any]:
        clock.advance(seconds)
        broker.call(broker.agent.tick())
        return dict(broker.status())

    return tick


def _broker(tmp_path: Any, name: str, vendor: VendorHandle) -> Any:
    # tick_interval long: the agent's own loop sleeps, each tick is the test's; retries every 5 s
    return start_broker(tmp_path / name, vendor=vendor, tick_interval=3600, retry_interval=5, trial_seconds=0)


def _events(broker: Any) -> list[str]:
    with broker.admin() as c:
        return [e["type"] for e in c.recent_events()]


def test_heartbeats_keep_the_activation_and_extend_its_validity(tmp_path: Any) -> None:
    clock = FakeClock()
    vendor, key = _setup(tmp_path, clock)
    with vendor, _broker(tmp_path, "a", vendor) as broker:
        tick = _ticking(broker, clock)
        with broker.admin() as c:
            status = c.request("activate", {"license_key": key})["status"]
        first_valid = status["valid_until"]
        for _ in range(6):  # a minute: twice release_after, heartbeats every 10 s
            status = tick(10)
            assert vendor.service.release_silent() == []
        assert status["state"] == "active" and status["valid_until"] > first_valid
        beat = status["check_in"]["heartbeat"]
        assert beat["interval"] == 10 and beat["release_after"] == 30 and beat["last_ok_at"] is not None
        [act] = vendor.service.list_activations()
        assert act["last_heartbeat_at"] is not None and act["last_heartbeat_at"] >= clock.seconds() - 10


def test_released_with_a_seat_free_activates_again(tmp_path: Any) -> None:
    clock = FakeClock()
    vendor, key = _setup(tmp_path, clock)
    with vendor, _broker(tmp_path, "a", vendor) as broker:
        tick = _ticking(broker, clock)
        with broker.admin() as c:
            old = c.request("activate", {"license_key": key})["status"]["activation_id"]
        clock.advance(40)  # silent (a network cut, a paused VM): the vendor releases it
        assert vendor.service.release_silent() == [old]
        status = tick(0)  # the next heartbeat hears `released`, and the seat is free: it takes it back
        assert status["state"] == "active" and status["activation_id"] == old
        assert "activation_released" in _events(broker)
        [act] = vendor.service.list_activations()
        assert act["id"] == old and act["active"]
        state = json.loads((broker.state_dir / "state.json").read_text())
        assert key not in json.dumps(state)  # taken back with the instance key: no license key kept


def test_released_with_no_seat_serves_its_grace_then_stops(tmp_path: Any) -> None:
    """The grace is what the last signed answer granted (never longer than the vendor said): here
    the vendor shortened release_after while the instance was paused, so some of it is left."""
    clock = FakeClock()
    vendor, key = _setup(tmp_path, clock)
    with vendor, _broker(tmp_path, "a", vendor) as a, _broker(tmp_path, "b", vendor) as b:
        tick = _ticking(a, clock)
        with a.admin() as c:
            c.request("activate", {"license_key": key})
        tick(10)  # one heartbeat: valid until its time + 30 s
        license_id = vendor.license_id(key)
        vendor.service.update_license(license_id, {"release_after": 25})
        clock.advance(26)  # paused (a VM, a cut cable): no heartbeat; the vendor releases it
        [released] = vendor.service.release_silent()
        with b.admin() as c:  # the replacement takes the seat
            assert c.request("activate", {"license_key": key})["status"]["state"] == "active"
        status = tick(0)
        assert status["state"] == "grace" and status["serving"] and status["reason"] == RELEASED_GRACE
        assert status["deadline"] is not None and status["activation_id"] == released
        assert "activation_released" in _events(a)
        status = tick(5)  # the grace is over; no activation is free yet
        assert status["state"] == "unlicensed" and not status["serving"] and status["reason"] == RELEASED_STOPPED
        with MqttClient(a.port, client_id="late") as late:
            assert late.connect() == 5
        with b.admin() as c:  # a seat comes free: it activates again by itself at its next retry
            c.request("deactivate")
        status = tick(5)
        assert status["state"] == "active" and status["serving"] and status["activation_id"] == released
