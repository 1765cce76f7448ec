"""Floating metering (issue 16): a broker on a floating lease delivers its usage records to the
floating server, which forwards them to the vendor online (batches it signs, embedding the records
the brokers signed) or in its next request code offline. Real broker, real floating server and
real vendor, each on its own socket."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.http import HttpOptions
from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import armor, unarmor
from mqtt_licensing.core.documents import InstanceRequest, sign_instance_request
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import b64, fingerprint, parse_envelope, public_bytes
from mqtt_licensing.core.usage_documents import UsageRecord
from mqtt_licensing.servers.floating.provision import activate_online, deactivate_online
from mqtt_licensing.servers.floating.usage import forward_online
from tests.helpers.activation import start_vendor
from tests.helpers.broker import MqttClient, start_broker, wait_for
from tests.helpers.floating import start_floating

BRIDGE_CLASS = {"snowflake_bridge": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}
FEATURES = ["mqtt_server", "iot_bridge_snowflake"]
HTTP = HttpOptions(timeout=10.0)


def floating_broker(tmp_path, name, vendor, fls):
    broker = start_broker(
        tmp_path / name,
        vendor_url=None,
        vendor_public_key=vendor.public_key_text,
        client_classes=BRIDGE_CLASS,
        usage_interval=0.2,
        usage_report_interval=0.2,
        trial_seconds=0,
    )
    with broker.admin() as c:
        c.request("activate", {"method": "floating", "server_url": fls.url, "features": FEATURES})
    return broker


def bridge_traffic(broker, fls, count: int, client_id: str = "snowflake-1") -> None:
    meter = broker.agent.metering.meter

    def counted() -> int:  # wherever the usage is now: open interval, ledger, floating outbox
        return meter.messages + sum(r.messages for r in pending_records(broker)) + outbox_messages(fls)

    before = counted()
    with MqttClient(broker.port, client_id=client_id) as bridge, MqttClient(broker.port, client_id="plc") as plc:
        assert bridge.connect() == 0 and plc.connect() == 0
        assert bridge.subscribe("plant/#") == 1
        for n in range(count):
            plc.publish("plant/a", b"%d" % n)
        wait_for(lambda: len(bridge.messages) >= count, message="bridge received everything")
        # the broker counts a delivery once its send completed: stay connected until it has
        wait_for(lambda: counted() >= before + count, message="the broker counted every delivery")


def pending_records(broker) -> list[UsageRecord]:
    ledger = broker.agent.metering.ledger
    return [UsageRecord.from_body(parse_envelope(b).unverified_body()) for _s, b in ledger.pending()]


def outbox_messages(fls) -> int:
    with fls.service.store.transaction() as tx:
        rows = tx.usage.oldest(10_000)
    return sum(UsageRecord.from_body(parse_envelope(rec).unverified_body()).messages for _f, _s, rec, _k in rows)


def at_vendor(vendor, license_id: str) -> tuple[int, dict[str, Any]]:
    usage = vendor.service.usage_by_day(license_id)
    return sum(d["messages"] for d in usage["days"]), usage


def delivered(broker, fls, count: int) -> None:
    """The broker's ledger is empty and the floating server holds all ``count`` messages."""
    wait_for(
        lambda: outbox_messages(fls) >= count and broker.agent.metering.ledger.pending_count == 0,
        timeout=20,
        message="records delivered to the floating server",
    )
    assert outbox_messages(fls) == count


def test_usage_through_a_floating_broker_reaches_the_vendor_once_online(tmp_path) -> None:
    with start_vendor(tmp_path / "vendor") as vendor, start_floating(tmp_path / "fls") as fls:
        lic, key = vendor.issue_license(features=FEATURES, model="floating", seats=2)
        asyncio.run(activate_online(fls.service, key, vendor.url, vendor_public_key=vendor.public_key, options=HTTP))
        with floating_broker(tmp_path, "b1", vendor, fls) as b1, floating_broker(tmp_path, "b2", vendor, fls) as b2:
            bridge_traffic(b1, fls, 60)
            bridge_traffic(b2, fls, 25, client_id="snowflake-2")
            wait_for(lambda: outbox_messages(fls) >= 85, timeout=20, message="both brokers delivered")
            assert outbox_messages(fls) == 85
        assert fls.service.status()["usage"]["outbox"] > 0

        # a captured batch, stored by the vendor, but the floating server dies before it drops it
        captured = fls.service.forward_batch()
        assert captured is not None
        request, _nonce, refs = captured
        assert asyncio.run(_post(vendor.url, request))
        assert at_vendor(vendor, lic["id"])[0] == 85
        fls.restart()  # the outbox still holds the batch: it is sent again and counts nothing new
        assert asyncio.run(forward_online(fls.service, vendor.url, options=HTTP)) == len(refs)
        total, usage = at_vendor(vendor, lic["id"])
        assert total == 85 and usage["missing"] == {}
        assert fls.service.status()["usage"]["outbox"] == 0

        # replaying the batch changes nothing
        before = vendor.service.usage_by_day(lic["id"])
        assert asyncio.run(_post(vendor.url, request))
        assert vendor.service.usage_by_day(lic["id"]) == before
        assert asyncio.run(forward_online(fls.service, vendor.url, options=HTTP)) == 0

        # a broker behind the floating server whose records 1 and 2 never arrived: the hole shows
        broker_key = Ed25519PrivateKey.generate()
        third = UsageRecord(fingerprint(broker_key), 3, 0, 60, 1, 1, 60).sign(broker_key)
        far_key = Ed25519PrivateKey.generate()  # and one numbered absurdly high: holes are listed, not looped over
        far = UsageRecord(fingerprint(far_key), 10**15, 0, 60, 1, 1, 60).sign(far_key)
        cert = fls.service.status()["pool"]
        batch = sign_instance_request(
            fls.service.signing_key,
            kind=labels.KIND_FLOATING_USAGE,
            nonce="hole",
            created_at=_now(),
            activation_id=cert["activation_id"],
            usage=(third, far),
            usage_keys=(public_bytes(broker_key), public_bytes(far_key)),
        )
        asyncio.run(_post(vendor.url, batch))
        missing = vendor.service.usage_by_day(lic["id"])["missing"]
        assert missing == {fingerprint(broker_key): [1, 2], fingerprint(far_key): list(range(1, 101))}


async def _post(url: str, request: bytes) -> bytes:
    async with ActivationClient(url, options=HTTP) as client:
        return await client.forward_usage(request)


def test_usage_rides_in_the_floating_request_code_offline(tmp_path) -> None:
    with start_vendor(tmp_path / "vendor") as vendor, start_floating(tmp_path / "fls") as fls:
        lic, key = vendor.issue_license(features=FEATURES, model="floating", seats=2)
        fls.service.pin_vendor_key(vendor.public_key)
        first = armor(labels.FLOATING_REQUEST, fls.service.offline_request(key))
        answer = vendor.service.floating_issue(first)
        assert answer.usage_records == 0
        fls.service.install_certificate(unarmor(answer.certificate, labels.FLOATING_CERTIFICATE), offline=True)
        with floating_broker(tmp_path, "b1", vendor, fls) as b1:
            bridge_traffic(b1, fls, 40)
            delivered(b1, fls, 40)

        renewal = armor(labels.FLOATING_REQUEST, fls.service.offline_request(key))
        carried = InstanceRequest.from_body(parse_envelope(unarmor(renewal, labels.FLOATING_REQUEST)).unverified_body())
        assert carried.usage and len(carried.usage_keys) == 1
        answer = vendor.service.floating_issue(renewal)
        assert answer.usage_records == len(carried.usage)
        assert at_vendor(vendor, lic["id"])[0] == 40
        assert vendor.service.floating_issue(renewal).usage_records == len(carried.usage)  # imported once
        assert at_vendor(vendor, lic["id"])[0] == 40
        assert fls.service.status()["usage"]["outbox"] == len(carried.usage)  # kept until installed
        fls.service.install_certificate(unarmor(answer.certificate, labels.FLOATING_CERTIFICATE), offline=True)
        assert fls.service.status()["usage"]["outbox"] == 0
        rows = vendor.service.usage_by_day(lic["id"])
        assert rows["missing"] == {} and rows["days"][0]["messages"] == 40


def test_the_floating_server_takes_records_from_lease_holders_only(tmp_path) -> None:
    with start_vendor(tmp_path / "vendor") as vendor, start_floating(tmp_path / "fls") as fls:
        _lic, key = vendor.issue_license(features=FEATURES, model="floating", seats=2)
        asyncio.run(activate_online(fls.service, key, vendor.url, vendor_public_key=vendor.public_key, options=HTTP))
        with floating_broker(tmp_path, "b1", vendor, fls) as b1:
            bridge_traffic(b1, fls, 5)
            delivered(b1, fls, 5)
            identity = b1.agent._core.identity
            with fls.service.store.transaction() as tx:
                (fp, seq, record, _key), *_ = tx.usage.oldest(10)
            _refused_at_the_floating_server(fls, identity, fp, seq, record)
        _refused_at_the_vendor(vendor, fls)


def _refused_at_the_floating_server(fls, identity, fp: str, seq: int, record: bytes) -> None:
    stranger = Ed25519PrivateKey.generate()
    own = sign_instance_request(stranger, kind=labels.KIND_LEASE_USAGE, nonce="n1", created_at=_now())
    with pytest.raises(LicensingError) as err:  # no lease: nothing is taken
        fls.service.accept_usage(own, [record])
    assert err.value.code == ErrorCode.LEASE_NOT_FOUND

    # a lease holder cannot hand in another instance's records, nor records it signed for someone else
    forged = UsageRecord(
        instance_fingerprint=fp, sequence=seq + 100, period_start=0, period_end=1, messages=9, bytes=9, client_seconds=0
    ).sign(stranger)
    request = sign_instance_request(identity, kind=labels.KIND_LEASE_USAGE, nonce="n2", created_at=_now())
    with pytest.raises(LicensingError) as err:
        fls.service.accept_usage(request, [forged])
    assert err.value.code == ErrorCode.INVALID_SIGNATURE


def _refused_at_the_vendor(vendor, fls) -> None:
    stranger = Ed25519PrivateKey.generate()
    # at the vendor: a batch whose record comes without its instance's key, or with another key
    batch, _nonce, _refs = fls.service.forward_batch()
    body = InstanceRequest.from_body(parse_envelope(batch).unverified_body())
    server_key = fls.service.signing_key
    for keys in [(), (stranger.public_key().public_bytes_raw(),)]:
        bad = sign_instance_request(
            server_key,
            kind=labels.KIND_FLOATING_USAGE,
            nonce=f"k{len(keys)}",
            created_at=_now(),
            activation_id=body.activation_id,
            usage=body.usage,
            usage_keys=keys,
        )
        with pytest.raises(LicensingError) as err:
            asyncio.run(_post(vendor.url, bad))
        assert err.value.code == ErrorCode.WRONG_INSTANCE
    # a batch signed by anyone but the floating server is refused
    with pytest.raises(LicensingError) as err:
        asyncio.run(
            _post(
                vendor.url,
                sign_instance_request(
                    stranger,
                    kind=labels.KIND_FLOATING_USAGE,
                    nonce="s",
                    created_at=_now(),
                    activation_id=body.activation_id,
                    usage=body.usage,
                    usage_keys=body.usage_keys,
                ),
            )
        )
    assert err.value.code == ErrorCode.INVALID_SIGNATURE


def _now() -> int:
    import time

    return int(time.time())


def test_the_http_route_answers_with_a_receipt_of_the_floating_server(tmp_path) -> None:
    """The wire shape: a bad body is a typed error, never a 500."""
    with start_floating(tmp_path / "fls") as fls:
        reply = httpx.post(f"{fls.url}/v1/usage", json={"request": b64(b"x"), "records": "nope"})
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_field"


def test_a_stopping_broker_hands_its_records_over_before_it_gives_the_seat_back(tmp_path) -> None:
    with start_vendor(tmp_path / "vendor") as vendor, start_floating(tmp_path / "fls") as fls:
        lic, key = vendor.issue_license(features=FEATURES, model="floating", seats=2)
        asyncio.run(activate_online(fls.service, key, vendor.url, vendor_public_key=vendor.public_key, options=HTTP))
        broker = start_broker(
            tmp_path / "b1",
            vendor_url=None,
            vendor_public_key=vendor.public_key_text,
            client_classes=BRIDGE_CLASS,
            usage_interval=3600,  # nothing is closed or delivered while it runs
            usage_report_interval=3600,
            trial_seconds=0,
        )
        with broker:
            with broker.admin() as c:
                c.request("activate", {"method": "floating", "server_url": fls.url, "features": FEATURES})
            bridge_traffic(broker, fls, 30)
            assert outbox_messages(fls) == 0
        assert outbox_messages(fls) == 30
        assert fls.service.status()["leases"] == []  # and the seat was handed back

        # the floating server deactivated online hands its outbox to the vendor first
        asyncio.run(deactivate_online(fls.service, options=HTTP))
        assert at_vendor(vendor, lic["id"])[0] == 30 and outbox_messages(fls) == 0
