"""Dead activations released, live ones never: real broker processes (kill -9), a real vendor
server over HTTP with its release duty running, short terms (a heartbeat every second, release
after 3 s silent) so the figures are seconds, not minutes.

The attack: a customer lets a "dead" broker keep running (or brings it back) and hopes for a
second seat. The defence measured here: the replacement gets the seat within release_after plus
one heartbeat (the release duty passes once per heartbeat interval), and a live broker, even 50 ms
away, is never released.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, start_broker
from tests.reliability.support import BrokerProcess, FaultProxy, http_response, wait_until

INTERVAL, RELEASE = 1, 3


def admin(port: int, timeout: float = 5.0) -> LicenseClient:
    return LicenseClient("127.0.0.1", port, username=ADMIN, password=ADMIN_PASSWORD, timeout=timeout)


def _broker(tmp_path: Any, name: str, vendor: Any) -> BrokerProcess:
    workdir = tmp_path / name
    workdir.mkdir()
    return BrokerProcess(
        workdir,
        workdir / "state",
        vendor_url=vendor.url,
        vendor_public_key=vendor.public_key_text,
        tick_interval=0.1,
        retry_interval=1,
        trial_seconds=0,
    )


@pytest.mark.timeout(120)
def test_a_kill9d_brokers_activation_is_taken_by_its_replacement(tmp_path: Any, vendor: Any) -> None:
    _lic, key = vendor.service.issue_license(
        features=["mqtt_server"], heartbeat_interval=INTERVAL, release_after=RELEASE
    )
    old, new = _broker(tmp_path, "old", vendor).start(), _broker(tmp_path, "new", vendor).start()
    try:
        with admin(old.port) as c:
            dead = c.request("activate", {"license_key": key})["status"]["activation_id"]
        time.sleep(2.5 * INTERVAL)  # it heartbeats (the vendor sees it)
        assert vendor.service.list_activations()[0]["last_heartbeat_at"] is not None
        with admin(new.port) as c, pytest.raises(LicensingError) as refused:
            c.request("activate", {"license_key": key})
        assert refused.value.code == ErrorCode.NO_ACTIVATIONS_LEFT  # no second seat while it lives
        old.kill9()
        killed = time.monotonic()

        def taken() -> str | None:
            try:
                with admin(new.port) as c:
                    return str(c.request("activate", {"license_key": key})["status"]["activation_id"])
            except LicensingError as exc:
                assert exc.code == ErrorCode.NO_ACTIVATIONS_LEFT, exc
                return None

        replacement = wait_until(taken, 30, "the replacement never got the seat", interval=0.1)
        took = time.monotonic() - killed
        # release_after + one heartbeat (the duty passes once per shortest interval), + 1 s: the
        # server counts whole seconds, + 1 s for the replacement's poll and round trip on a busy machine
        bound = RELEASE + INTERVAL + 2
        print(f"seat taken by the replacement {took:.2f} s after kill -9 (bound {bound} s)")
        assert took <= bound
        acts = {a["id"]: a for a in vendor.service.list_activations(include_freed=True)}
        assert acts[dead]["freed_reason"] == "released_no_heartbeat" and acts[replacement]["active"]
    finally:
        old.terminate()
        new.terminate()


@pytest.mark.timeout(120)
def test_a_live_broker_50ms_away_is_never_released(tmp_path: Any, vendor: Any) -> None:
    _lic, key = vendor.service.issue_license(
        features=["mqtt_server"], heartbeat_interval=INTERVAL, release_after=RELEASE
    )
    proxy = FaultProxy(vendor.port)
    proxy.latency = 0.05  # every chunk, each way: a heartbeat's round trip takes 100 ms or more
    try:
        with start_broker(
            tmp_path / "live", vendor=vendor, vendor_url=proxy.url, tick_interval=0.1, retry_interval=1
        ) as broker:
            with broker.admin() as c:
                act = c.request("activate", {"license_key": key})["status"]["activation_id"]
            end = time.monotonic() + 4 * RELEASE  # four release windows, the duty passing every second
            states = set()
            while time.monotonic() < end:
                states.add(broker.agent.evaluation.state)
                time.sleep(0.2)
            [live] = vendor.service.list_activations(include_freed=True)
            assert live["id"] == act and live["active"], live
            assert states == {"active"}, states
            status = broker.status()
            assert status["activation_id"] == act and status["check_in"]["heartbeat"]["last_ok_at"] is not None
    finally:
        proxy.close()


@pytest.mark.timeout(120)
def test_an_unsigned_released_answer_changes_nothing(tmp_path: Any, vendor: Any) -> None:
    """Someone on the path answers heartbeats with `released` and no signed verdict: the broker
    treats it as an unreachable vendor (keeps its activation, serves on), and asks for no new one."""
    _lic, key = vendor.service.issue_license(
        features=["mqtt_server"], heartbeat_interval=INTERVAL, release_after=RELEASE
    )
    proxy = FaultProxy(vendor.port)
    try:
        with start_broker(
            tmp_path / "b", vendor=vendor, vendor_url=proxy.url, tick_interval=0.1, retry_interval=1
        ) as broker:
            with broker.admin() as c:
                act = c.request("activate", {"license_key": key})["status"]["activation_id"]
            body = json.dumps({"error": {"code": "released", "message": "forged"}}).encode()
            proxy.set("respond", response=http_response(410, body))
            wait_until(
                lambda: broker.status()["check_in"]["failing_since"] is not None, 10, "the forged answer was not seen"
            )
            status = broker.status()
            assert status["activation_id"] == act and status["serving"] and status["state"] in ("active", "grace")
            assert "released" not in status["reason"]
            assert len(vendor.service.list_activations(include_freed=True)) == 1  # no second activation asked for
    finally:
        proxy.close()
