"""The state folder: identity, atomic state file, tamper and corruption handling, clock rollback."""

import json
import time

from tests.helpers.broker import MqttClient, start_broker
from tests.helpers.fakeclock import FakeClock
from tests.helpers.statefolder import resealed_edit


def activate(broker, key):
    with broker.admin() as c:
        return c.request("activate", {"license_key": key})["status"]


def test_identity_is_created_once_and_private(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        fp = broker.agent.fingerprint
    key_file = tmp_path / "s" / "identity.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "s" / "state.json").stat().st_mode & 0o777 == 0o600
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        assert broker.agent.fingerprint == fp


def test_tampered_certificate_is_reported_and_not_trusted(tmp_path, vendor):
    key = vendor.issue(max_connections=5)
    state_file = tmp_path / "s" / "state.json"
    broker = start_broker(tmp_path / "s", vendor=vendor, trial_seconds=0)
    try:
        activate(broker, key)
        broker.stop()
        state = json.loads(state_file.read_text())
        from mqtt_licensing.core.signing import b64, unb64

        blob = bytearray(unb64(state["source"]["certificate"]))
        blob[len(blob) // 2] ^= 0x01  # one flipped bit inside the signed body
        state["source"]["certificate"] = b64(bytes(blob))
        state_file.write_text(json.dumps(state))
        broker.start()
        status = broker.status()
        assert status["state"] == "unlicensed" and status["license_id"] is None
        assert status["problems"] and status["problems"][0]["code"] == "state_corrupt"
        with MqttClient(broker.port, client_id="x") as c:
            assert c.connect() == 5
    finally:
        broker.stop()


def test_corrupt_state_file_is_moved_aside_and_does_not_grant_a_new_trial(tmp_path, vendor):
    state_dir = tmp_path / "s"
    with start_broker(state_dir, vendor=vendor):
        pass
    (state_dir / "state.json").write_bytes(b'{"version": 1, "trial_started_at": ')  # half-written
    with start_broker(state_dir, vendor=vendor) as broker:
        status = broker.status()
        assert status["state"] == "unlicensed"
        assert status["problems"][0]["code"] == "state_corrupt"
        assert list(state_dir.glob("state.json.corrupt-*"))
    # and the next start is clean (no crash loop), the problem having been dealt with
    with start_broker(state_dir, vendor=vendor) as broker:
        assert broker.status()["problems"] == []


def test_certificate_from_a_cloned_state_folder_is_not_trusted_by_another_identity(tmp_path, vendor):
    key = vendor.issue()
    a = start_broker(tmp_path / "a", vendor=vendor, trial_seconds=0)
    try:
        activate(a, key)
    finally:
        a.stop()
    b_dir = tmp_path / "b"
    with start_broker(b_dir, vendor=vendor, trial_seconds=0):
        pass  # b has its own identity
    (b_dir / "state.json").write_bytes((tmp_path / "a" / "state.json").read_bytes())
    with start_broker(b_dir, vendor=vendor, trial_seconds=0) as b:
        status = b.status()
        assert status["state"] == "unlicensed"
        assert "another instance" in status["problems"][0]["message"]


def test_clock_rollback_at_runtime(tmp_path, vendor):
    key = vendor.issue()
    clock = FakeClock()
    with start_broker(
        tmp_path / "s", vendor=vendor, check_in_interval=3600, retry_interval=30, clock_tolerance=60, tick_interval=3600
    ) as broker:
        broker.agent.clock = clock  # the loop sleeps after its first step: the test ticks
        activate(broker, key)
        vendor.stop()  # no check-in can vouch for the time while the clock is wrong
        clock.offset = -3600  # someone set the clock back an hour
        broker.call(broker.agent.tick())
        assert broker.agent.evaluation.state == "clock_tampered"
        with MqttClient(broker.port, client_id="c1") as c:
            assert c.connect() == 5
        assert broker.status()["clock"]["tampered"] is True
        clock.offset = 0  # clock fixed: the next online check-in clears it
        vendor.start()
        clock.advance(31)  # the retry is due
        broker.call(broker.agent.tick())
        assert broker.agent.evaluation.state == "active"
        with MqttClient(broker.port, client_id="c2") as c:
            assert c.connect() == 0


def test_clock_rollback_across_restart(tmp_path, vendor):
    state_dir = tmp_path / "s"
    with start_broker(state_dir, vendor=vendor, clock_tolerance=60):
        pass
    # this instance once saw tomorrow (sealed again: an unsealed edit is caught before the clock is)
    resealed_edit(state_dir, lambda state: state.update(last_seen=int(time.time()) + 86400))
    with start_broker(state_dir, vendor=vendor, clock_tolerance=60) as broker:
        assert broker.status()["state"] == "clock_tampered"
