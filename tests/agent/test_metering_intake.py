"""Usage batches counted outside the agent (the Mosquitto plugin): saved before they are
acknowledged, counted once however often they come, and never lost or doubled by a crash between
the intake's write and the ledger record's (the two writes of closing an interval)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent.metering import Metering
from mqtt_licensing.agent.metering.intake import Intake
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import fingerprint


def clock() -> float:
    return 1_900_000_000.0


async def loaded(tmp_path, identity) -> Metering:
    m = Metering(tmp_path, clock=clock)
    await m.load(identity, fingerprint(identity))
    return m


def records(m: Metering) -> int:
    return m.ledger.pending_count


async def test_a_batch_is_counted_once_and_survives_a_restart(tmp_path) -> None:
    identity = Ed25519PrivateKey.generate()
    m = await loaded(tmp_path, identity)
    await m.take_batch("boot-a", 1, 10, 100)
    await m.take_batch("boot-a", 1, 10, 100)  # sent again: its acknowledgement was lost
    await m.take_batch("boot-a", 2, 5, 50)
    assert (m.meter.messages, m.meter.bytes) == (15, 150)
    again = await loaded(tmp_path, identity)  # kill -9: nothing was closed into a record
    assert (again.meter.messages, again.meter.bytes) == (15, 150)
    await again.take_batch("boot-a", 2, 5, 50)
    await again.take_batch("boot-b", 1, 1, 1)  # Mosquitto restarted: its numbering starts over
    assert (again.meter.messages, again.meter.bytes) == (16, 151)
    record = await again.close_interval(license_id=None, activation_id=None)
    assert record is not None and (record.messages, record.bytes) == (16, 151)
    after = await loaded(tmp_path, identity)  # closed: in the record, not also in the open interval
    assert (after.meter.messages, after.meter.bytes) == (0, 0)
    assert after.intake.seen("boot-b", 1)


async def test_a_crash_between_the_intake_and_the_record_neither_loses_nor_doubles(tmp_path) -> None:
    identity = Ed25519PrivateKey.generate()
    m = await loaded(tmp_path, identity)
    await m.take_batch("boot-a", 1, 7, 70)
    # The intake said "closing into record 1", and the process died before the record was written.
    intake = Intake(m.ledger.folder)
    intake.load(0)
    intake.begin_close(1)
    lost = await loaded(tmp_path, identity)
    assert records(lost) == 0 and (lost.meter.messages, lost.meter.bytes) == (7, 70)
    # Now it dies after the record was written and before the intake was written again.
    record = await lost.close_interval(license_id=None, activation_id=None)
    assert record is not None and record.messages == 7
    data = json.loads((tmp_path / "usage" / "intake.json").read_bytes())
    assert data["closing"]["record"] == record.sequence
    written = await loaded(tmp_path, identity)
    assert records(written) == 1 and (written.meter.messages, written.meter.bytes) == (0, 0)


async def test_an_intake_from_a_newer_version_or_edited_by_hand_stops_the_load(tmp_path) -> None:
    identity = Ed25519PrivateKey.generate()
    m = await loaded(tmp_path, identity)
    await m.take_batch("boot-a", 1, 7, 70)
    path = tmp_path / "usage" / "intake.json"
    data = json.loads(path.read_bytes())
    path.write_text(json.dumps({**data, "version": 2}))
    with pytest.raises(LicensingError) as newer:
        await loaded(tmp_path, identity)
    assert newer.value.code is ErrorCode.STATE_TOO_NEW and json.loads(path.read_bytes())["version"] == 2
    path.write_text(json.dumps({**data, "messages": "many"}))
    with pytest.raises(LicensingError) as edited:
        await loaded(tmp_path, identity)
    assert edited.value.code is ErrorCode.STATE_CORRUPT
