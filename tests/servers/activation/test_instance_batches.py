"""Check-ins and heartbeats batched on one thread (servers/_jobs.py, on SQLite): the requests that
arrive together share one transaction, with the rules of a request on its own: one for a released
activation gets its signed verdict alone while the live ones of its batch are kept, the same
heartbeat twice in one batch is harmless, the same check-in twice is a replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import ActivationCertificate, HeartbeatAck, Verdict
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers.activation.service import ActivationService
from tests.helpers.batches import in_one_batch

from .conftest import Instance, ManualClock

pytestmark = pytest.mark.timeout(120)

TERMS = {"heartbeat_interval": 10, "release_after": 30}


@pytest.fixture
def service(tmp_path: Path, clock: ManualClock) -> Iterator[ActivationService]:
    svc = ActivationService.open(tmp_path / "vendor", clock=clock, certificate_lifetime=60)  # SQLite
    yield svc
    svc.close()


def test_a_released_activation_in_a_batch_of_live_ones_gets_its_verdict_alone(
    service: ActivationService, clock: ManualClock
) -> None:
    assert service.batcher is not None  # SQLite: heartbeats are batched
    _lic, key = service.issue_license(features=["mqtt_server"], max_activations=2, **TERMS)
    live, dead = Instance(), Instance()
    live_id = service.activate(key, live.activate(key)).activation_id
    dead_id = service.activate(key, dead.activate(key)).activation_id
    clock.advance(20)
    service.heartbeat(live.request(labels.KIND_HEARTBEAT, activation_id=live_id, created_at=clock()))
    clock.advance(15)  # the dead one silent 35 s > release_after, the live one 15 s
    assert service.release_silent() == [dead_id]

    beat = live.request(labels.KIND_HEARTBEAT, activation_id=live_id, created_at=clock())
    late = dead.request(labels.KIND_HEARTBEAT, activation_id=dead_id, created_at=clock())
    first, refused, again = in_one_batch(
        service.batcher, [lambda: service.heartbeat_job(beat), lambda: service.heartbeat_job(late),
                          lambda: service.heartbeat_job(beat)],
    )  # fmt: skip

    public = service.public_key
    for blob in (first, again):  # the same heartbeat twice: acknowledged twice, nothing else
        ack = HeartbeatAck.open(blob, public)
        assert (ack.activation_id, ack.issued_at, ack.valid_until) == (live_id, clock(), clock() + 30)
    assert isinstance(refused, LicensingError) and refused.code == ErrorCode.RELEASED
    assert refused.evidence is not None
    verdict = Verdict.open(refused.evidence, public)
    assert (verdict.verdict, verdict.activation_id) == ("released", dead_id)

    acts = {a["id"]: a for a in service.list_activations(include_freed=True)}
    assert acts[live_id]["active"] and acts[live_id]["last_heartbeat_at"] == clock()  # committed
    assert not acts[dead_id]["active"] and acts[dead_id]["freed_reason"] == "released_no_heartbeat"


def test_a_refusal_before_the_transaction_is_answered_alone(service: ActivationService, clock: ManualClock) -> None:
    """A heartbeat refused in its checks (a request naming no activation) takes nothing from the
    others of its batch."""
    assert service.batcher is not None
    _lic, key = service.issue_license(features=["mqtt_server"], **TERMS)
    inst = Instance()
    act_id = service.activate(key, inst.activate(key)).activation_id
    clock.advance(5)
    beat = inst.request(labels.KIND_HEARTBEAT, activation_id=act_id, created_at=clock())
    nameless = inst.request(labels.KIND_HEARTBEAT, created_at=clock())
    refused, ack = in_one_batch(
        service.batcher, [lambda: service.heartbeat_job(nameless), lambda: service.heartbeat_job(beat)]
    )
    assert isinstance(refused, LicensingError) and refused.code == ErrorCode.BAD_REQUEST
    assert HeartbeatAck.open(ack, service.public_key).activation_id == act_id
    assert service.list_activations()[0]["last_heartbeat_at"] == clock()


def test_check_ins_in_one_batch_keep_the_exactly_once_rules(service: ActivationService, clock: ManualClock) -> None:
    """One signed check-in sent twice in one batch is applied once (the second sees the first's
    nonce row: a replay); a check-in of a released activation gets its signed verdict; the live
    one's certificate comes once its transaction committed."""
    assert service.batcher is not None
    _lic, key = service.issue_license(features=["mqtt_server"], max_activations=2, **TERMS)
    live, dead = Instance(), Instance()
    live_id = service.activate(key, live.activate(key)).activation_id
    dead_id = service.activate(key, dead.activate(key)).activation_id
    clock.advance(20)
    service.heartbeat(live.request(labels.KIND_HEARTBEAT, activation_id=live_id, created_at=clock()))
    clock.advance(15)
    assert service.release_silent() == [dead_id]

    check_in = live.check_in(live_id, created_at=clock())
    late = dead.check_in(dead_id, created_at=clock())
    cert, replay, refused = in_one_batch(
        service.batcher, [lambda: service.check_in_job(check_in), lambda: service.check_in_job(check_in),
                          lambda: service.check_in_job(late)],
    )  # fmt: skip

    assert ActivationCertificate.open(cert, service.public_key).activation_id == live_id
    assert isinstance(replay, LicensingError) and "replay" in replay.message
    assert isinstance(refused, LicensingError) and refused.code == ErrorCode.RELEASED
    assert refused.evidence is not None  # the verdict, signed by the job's failure hook
    verdict = Verdict.open(refused.evidence, service.public_key)
    assert (verdict.verdict, verdict.activation_id) == ("released", dead_id)
    acts = {a["id"]: a for a in service.list_activations(include_freed=True)}
    assert acts[live_id]["last_check_in_at"] == clock() and not acts[dead_id]["active"]
