"""The usage ledger on disk (issue 16): closed intervals are signed records, one atomic file each;
a restart (or kill -9) keeps every closed record and never reuses a sequence number."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent.metering import Metering
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.signing import fingerprint
from mqtt_licensing.core.usage_documents import UsageAck, UsageRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def identity() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def metering(tmp_path, identity, clock) -> Metering:
    return Metering(tmp_path, clock=clock)


async def test_intervals_close_into_signed_sequential_records(tmp_path, identity) -> None:
    clock = Clock()
    m = metering(tmp_path, identity, clock)
    await m.load(identity, fingerprint(identity))
    m.opened("bridge")
    m.meter.messages += 3
    m.meter.bytes += 30
    clock.now += 60.5
    first = await m.close_interval(license_id="lic_1", activation_id="act_1")
    assert first is not None and (first.sequence, first.messages, first.bytes, first.client_seconds) == (1, 3, 30, 60)
    clock.now += 0.5  # the half second left over and this one: one more whole second, not lost to rounding
    m.closed("bridge")
    clock.now += 10  # disconnected: no more client time
    second = await m.close_interval(license_id="lic_1", activation_id="act_1")
    assert second is not None and (second.sequence, second.messages, second.client_seconds) == (2, 0, 1)
    clock.now += 60
    assert await m.close_interval(license_id=None, activation_id=None) is None  # nothing happened: no record
    blobs = [blob for _seq, blob in m.pending()]
    assert [UsageRecord.open(b, identity.public_key()).sequence for b in blobs] == [1, 2]


async def test_restart_keeps_closed_records_and_numbering(tmp_path, identity) -> None:
    clock = Clock()
    m = metering(tmp_path, identity, clock)
    await m.load(identity, fingerprint(identity))
    for _ in range(3):
        m.meter.messages += 1
        await m.close_interval(license_id=None, activation_id=None)
    m.meter.messages += 99  # the open interval: what a kill -9 now loses, and all it loses
    (tmp_path / "usage" / ".000000000004.usage.4242.tmp").write_bytes(b"half a rec")  # a write cut short
    again = metering(tmp_path, identity, clock)
    await again.load(identity, fingerprint(identity))
    assert [seq for seq, _ in again.pending()] == [1, 2, 3]
    assert not list((tmp_path / "usage").glob(".*.tmp"))
    assert again.ledger.next_sequence == 4


async def test_only_a_matching_signed_receipt_deletes_records_and_numbers_are_never_reused(tmp_path, identity) -> None:
    clock = Clock()
    vendor = Ed25519PrivateKey.generate()
    m = metering(tmp_path, identity, clock)
    await m.load(identity, fingerprint(identity))
    for _ in range(2):
        m.meter.messages += 1
        await m.close_interval(license_id=None, activation_id=None)
    good = UsageAck(instance_fingerprint=m.fingerprint, sequences=(1, 2), request_nonce="n", issued_at=1)
    forged = good.sign(Ed25519PrivateKey.generate())
    with pytest.raises(LicensingError):
        await m.acknowledge(forged, vendor.public_key(), "n", [1, 2])
    with pytest.raises(LicensingError):  # a genuine receipt for another report
        await m.acknowledge(good.sign(vendor), vendor.public_key(), "other", [1, 2])
    assert m.ledger.pending_count == 2
    await m.acknowledge(good.sign(vendor), vendor.public_key(), "n", [1])  # only what this report sent
    assert [seq for seq, _ in m.pending()] == [2]
    await m.acknowledge(good.sign(vendor), vendor.public_key(), "n", [2])
    restarted = metering(tmp_path, identity, clock)
    await restarted.load(identity, fingerprint(identity))
    assert restarted.ledger.pending_count == 0 and restarted.ledger.next_sequence == 3
