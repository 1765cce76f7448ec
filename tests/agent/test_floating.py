"""The agent side of floating licenses (issue 4): real brokers leasing seats from a
real floating license server whose pool certificate is signed by a test vendor key."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent import AgentConfig, LicensingAgent
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.signing import public_key_to_text
from tests.helpers.broker import MqttClient, start_broker, wait_for
from tests.helpers.fakeclock import FakeClock
from tests.helpers.floating import start_floating
from tests.helpers.transport import RecordingTransport

VENDOR = Ed25519PrivateKey.generate()
PINNED = public_key_to_text(VENDOR)


def broker(tmp_path, name, **options):
    options.setdefault("trial_seconds", 0)
    return start_broker(tmp_path / name, vendor_url=None, vendor_public_key=PINNED, **options)


def lease(broker_handle, fls, features=("mqtt_server",)):
    with broker_handle.admin() as c:
        return c.request("activate", {"method": "floating", "server_url": fls.url, "features": list(features)})


def test_floating_activation_status_and_deactivation(tmp_path):
    with start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=2) as fls, broker(tmp_path, "b1") as b:
        status = lease(b, fls)["status"]
        assert status["state"] == "active" and status["model"] == "floating"
        assert status["floating"]["server"] == fls.url
        assert status["floating"]["lease_expires_at"] and status["floating"]["lease_id"]
        assert status["features"] == ["mqtt_server"]
        with MqttClient(b.port, client_id="c") as c:
            assert c.connect() == 0
        with b.admin() as c:
            reply = c.request("deactivate")
        assert reply["seat_released"] is True and reply["status"]["serving"] is False


def test_last_seat_then_freed(tmp_path):
    with (
        start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=2) as fls,
        broker(tmp_path, "a") as a,
        broker(tmp_path, "b") as b,
        broker(tmp_path, "c") as c,
    ):
        lease(a, fls)
        lease(b, fls)
        with pytest.raises(LicensingError) as err:
            lease(c, fls)
        assert err.value.code == "no_seats"
        with a.admin() as admin:
            admin.request("deactivate")
        assert lease(c, fls)["status"]["state"] == "active"


def test_same_instance_leasing_twice_uses_one_seat(tmp_path):
    with start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=1) as fls, broker(tmp_path, "a") as a:
        first = lease(a, fls)["status"]["floating"]["lease_id"]
        with a.admin() as c:
            second = c.request("reactivate")["status"]["floating"]["lease_id"]
        assert first == second


def test_feature_the_pool_lacks(tmp_path):
    with (
        start_floating(tmp_path / "fls", vendor_key=VENDOR, features=["mqtt_server"]) as fls,
        broker(tmp_path, "a") as a,
    ):
        with pytest.raises(LicensingError) as err:
            lease(a, fls, features=["mqtt_server", "iot_bridge_snowflake"])
        assert err.value.code == "feature_unavailable"


def test_auto_activation_of_several_brokers_from_one_config(tmp_path):
    with start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=3) as fls:
        brokers = [
            broker(
                tmp_path, f"b{i}", floating_server_url=fls.url, floating_features=["mqtt_server"], retry_interval=0.3
            )
            for i in range(3)
        ]
        try:
            for b in brokers:
                wait_for(lambda b=b: b.agent.evaluation.state == "active", timeout=10)
            fingerprints = {b.agent.fingerprint for b in brokers}
            assert len(fingerprints) == 3
        finally:
            for b in brokers:
                b.stop()
        # a clean shutdown returned every seat: three new brokers get them at once
        extra = [broker(tmp_path, f"x{i}", floating_server_url=fls.url, retry_interval=0.3) for i in range(3)]
        try:
            for b in extra:
                wait_for(lambda b=b: b.agent.evaluation.state == "active", timeout=10)
        finally:
            for b in extra:
                b.stop()


def test_server_down_keeps_serving_until_lease_expiry_then_recovers(tmp_path):
    clock = FakeClock()  # the floating server's and the agent's
    with (
        start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=1, ttl=600, clock=clock.seconds) as fls,
        broker(tmp_path, "a", retry_interval=30, tick_interval=3600) as a,
    ):
        a.agent.clock = clock  # its loop sleeps after the first step: the test ticks

        def tick(seconds: float) -> str:
            clock.advance(seconds)
            a.call(a.agent.tick())
            return str(a.agent.evaluation.state)

        lease(a, fls)
        fls.stop()
        # the renewal (due at a third of the TTL) fails, but the lease still holds: still serving
        assert tick(201) == "active"
        assert a.status()["floating"]["last_error"] is not None
        with MqttClient(a.port, client_id="during-outage") as c:
            assert c.connect() == 0
        # past the lease expiry: not serving, and trying again by itself
        assert tick(400) == "unlicensed"
        with MqttClient(a.port, client_id="after-expiry") as c:
            assert c.connect() == 5
        fls.restart()
        assert tick(31) == "active"


def test_renewal_keeps_the_lease_alive(tmp_path):
    clock = FakeClock()  # the floating server's and the agent's
    with (
        start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=1, ttl=600, clock=clock.seconds) as fls,
        broker(tmp_path, "a", tick_interval=3600) as a,
    ):
        a.agent.clock = clock  # its loop sleeps after the first step: the test ticks
        first_expiry = lease(a, fls)["status"]["floating"]["lease_expires_at"]
        clock.advance(150)
        a.call(a.agent.tick())
        assert a.status()["floating"]["lease_expires_at"] == first_expiry  # not due before a third of the TTL
        for _ in range(3):  # three renewals carry it past its first expiry
            clock.advance(201)
            a.call(a.agent.tick())
            assert a.agent.evaluation.state == "active"
        assert a.status()["floating"]["lease_expires_at"] > first_expiry


def test_lease_from_a_pool_the_vendor_did_not_sign_is_refused(tmp_path):
    rogue_vendor = Ed25519PrivateKey.generate()
    with start_floating(tmp_path / "fls", vendor_key=rogue_vendor) as fls, broker(tmp_path, "a") as a:
        with pytest.raises(LicensingError) as err:
            lease(a, fls)
        assert err.value.code == "invalid_signature"
        assert a.status()["serving"] is False


def test_floating_lease_survives_broker_restart(tmp_path):
    with start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=1) as fls:
        a = broker(tmp_path, "a")
        try:
            lease_id = lease(a, fls)["status"]["floating"]["lease_id"]
            a.restart()  # clean shutdown returns the seat; the broker leases again at start
            wait_for(lambda: a.agent.evaluation.state == "active", timeout=10)
            assert a.status()["floating"]["server"] == fls.url
            assert a.status()["floating"]["lease_id"]
        finally:
            a.stop()
        assert lease_id


def test_reactivate_rereads_the_pool_terms(tmp_path):
    from tests.helpers.floating import make_pool_certificate

    with start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=2) as fls, broker(tmp_path, "a") as a:
        before = lease(a, fls)["status"]
        assert before["support_until"] is None and before["max_connections"] is None
        # the vendor renewed the pool: support added, a connection cap per broker
        fls.provision(
            make_pool_certificate(VENDOR, fls.public_key, seats=2, support_until=1924992000, max_connections=7)
        )
        with a.admin() as c:
            after = c.request("reactivate")["status"]
        assert after["support_until"] == "2031-01-01T00:00:00Z"
        assert after["max_connections"] == 7 and after["floating"]["seats"] == 2


def test_deactivate_stops_auto_activation_and_frees_the_seat(tmp_path):
    with (
        start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=1) as fls,
        broker(tmp_path, "a", floating_server_url=fls.url, retry_interval=30, tick_interval=3600) as a,
    ):
        wait_for(lambda: a.agent.evaluation.state == "active", timeout=10)  # leased by its first step
        clock = FakeClock()
        a.agent.clock = clock
        with a.admin() as c:
            assert c.request("deactivate")["seat_released"] is True
        for _ in range(3):  # several retry intervals, a step each
            clock.advance(31)
            a.call(a.agent.tick())
            assert a.agent.evaluation.state == "unlicensed"
        with broker(tmp_path, "b", floating_server_url=fls.url, retry_interval=0.2) as b:
            wait_for(lambda: b.agent.evaluation.state == "active", timeout=10)  # the seat really is free


def test_a_refused_first_lease_shows_in_status_and_as_an_event(tmp_path):
    """Issue 10. Main: strangers took all 5 seats, the real broker went ``unlicensed`` and its
    status showed no error (``floating.last_error`` null). Now the refusal is shown and announced."""
    with start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=1) as fls:
        with broker(tmp_path, "squatter") as squatter:
            lease(squatter, fls)
            with broker(tmp_path, "b", floating_server_url=fls.url, retry_interval=0.3) as b:
                wait_for(lambda: (b.status()["floating"] or {}).get("last_error") is not None, timeout=10)
                status = b.status()
                assert status["state"] == "unlicensed"
                assert status["floating"]["last_error"]["code"] == "no_seats"
                assert status["floating"]["server"] is None and status["floating"]["lease_id"] is None


async def test_a_refused_lease_is_announced_once_per_kind_of_failure(tmp_path):
    with start_floating(tmp_path / "fls", vendor_key=VENDOR, seats=1) as fls:
        with broker(tmp_path, "squatter") as squatter:
            lease(squatter, fls)
            clock = FakeClock()
            agent = LicensingAgent(
                AgentConfig(
                    state_dir=str(tmp_path / "b"),
                    vendor_public_key=PINNED,
                    trial_seconds=0,
                    floating_server_url=fls.url,
                    retry_interval=30,
                ),
                clock=clock,
            )
            transport = RecordingTransport()
            await agent.load()
            await agent.start(transport, background=False)  # the test takes each step
            try:
                for _ in range(4):  # the first lease and three retries, each refused
                    clock.advance(31)
                    await agent.tick()
                    await transport.settle()
                # the first refusal is kept on the source it made; each of the three retries is counted
                failures = {"kind": "lease_acquire", "code": "no_seats"}
                assert agent.metrics.registry.get_sample_value("mqtt_license_sync_failures_total", failures) == 3
                [event] = transport.events("lease_failed")
                assert event["code"] == "no_seats" and event["server"] == fls.url
            finally:
                await agent.stop()
