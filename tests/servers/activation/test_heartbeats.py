"""Heartbeats and the release of silent activations, on a real vendor server over HTTP, its
clock moved by hand (the release duty reads the server's clock, never the instance's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import ActivationCertificate, HeartbeatAck, Verdict
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers.webhooks import Webhooks
from mqtt_licensing.servers.webhooks.schema import outbox
from tests.helpers.activation import VendorHandle

from .conftest import Instance, ManualClock

TERMS = {"heartbeat_interval": 10, "release_after": 30}


async def _activate(vendor: VendorHandle, key: str, inst: Instance) -> ActivationCertificate:
    async with ActivationClient(vendor.url) as client:
        result = await client.activate(key, inst.activate(key))
    return ActivationCertificate.open(result["certificate"], vendor.public_key)


async def _beat(vendor: VendorHandle, inst: Instance, cert: ActivationCertificate, created_at: int) -> HeartbeatAck:
    request = inst.request(
        labels.KIND_HEARTBEAT, activation_id=cert.activation_id, issued_at=cert.issued_at, created_at=created_at
    )
    async with ActivationClient(vendor.url) as client:
        return HeartbeatAck.open(await client.heartbeat(request), vendor.public_key)


def test_terms_are_checked_in_one_line(clocked_vendor: VendorHandle) -> None:
    service = clocked_vendor.service
    for terms, words in (
        ({"heartbeat_interval": 10, "release_after": 20}, "more than 2 x heartbeat_interval"),
        ({"release_after": 60}, "needs a heartbeat_interval"),
        ({"heartbeat_interval": -1}, "whole number of seconds"),
        ({"heartbeat_interval": 10, "release_after": 60, "model": "offline"}, "online licenses"),
    ):
        with pytest.raises(LicensingError) as info:
            service.issue_license(features=["mqtt_server"], **terms)
        assert info.value.code == ErrorCode.BAD_REQUEST and words in info.value.message
        assert "\n" not in info.value.message
    lic, _key = service.issue_license(features=["mqtt_server"], **TERMS)
    assert (lic["heartbeat_interval"], lic["release_after"]) == (10, 30)
    with pytest.raises(LicensingError, match="more than 2 x"):
        service.update_license(lic["id"], {"heartbeat_interval": 20})  # 30 <= 2 x 20
    assert service.update_license(lic["id"], {"release_after": 0, "heartbeat_interval": 0})["release_after"] is None
    with pytest.raises(LicensingError, match="more than twice"):
        service.catalogue.add_template(
            "edge", {"features": ["mqtt_server"], "heartbeat_interval": 10, "release_after": 15}
        )
    service.catalogue.add_template("edge", {"features": ["mqtt_server"], **TERMS})
    from_template, _ = service.issue_license(template="edge")
    assert (from_template["heartbeat_interval"], from_template["release_after"]) == (10, 30)


async def test_a_silent_activation_is_released_and_its_instance_told_so(
    clocked_vendor: VendorHandle, clock: ManualClock
) -> None:
    vendor, service = clocked_vendor, clocked_vendor.service
    Webhooks(service.store.engine).add("http://127.0.0.1:9/hook", ["activation.released"], clock())
    lic, key = service.issue_license(features=["mqtt_server"], **TERMS)
    dead, live = Instance(), Instance()
    service.update_license(lic["id"], {"max_activations": 2})
    dead_cert, live_cert = await _activate(vendor, key, dead), await _activate(vendor, key, live)
    assert (dead_cert.heartbeat_interval, dead_cert.release_after) == (10, 30)
    assert dead_cert.valid_until == dead_cert.issued_at + 30  # silent this long: released, and it stops serving

    def live_ids() -> set[str]:
        return {a["id"] for a in service.list_activations()}

    for _ in range(4):  # the live one heartbeats every 10 s; the dead one says nothing
        clock.advance(10)
        ack = await _beat(vendor, live, live_cert, clock())
        assert ack.valid_until == clock() + 30 and not ack.terms_changed
        # (the server's own release duty runs on the same clock: it may have made this pass already)
        assert set(service.release_silent()) <= {dead_cert.activation_id}
        silent_too_long = clock() - dead_cert.issued_at > 30
        assert live_ids() == (
            {live_cert.activation_id} if silent_too_long else {dead_cert.activation_id, live_cert.activation_id}
        )

    acts = {a["id"]: a for a in service.list_activations(include_freed=True)}
    assert acts[dead_cert.activation_id]["freed_reason"] == "released_no_heartbeat"
    assert acts[live_cert.activation_id]["active"] and acts[live_cert.activation_id]["last_heartbeat_at"] == clock()
    with service.store.engine.connect() as conn:
        events = [json.loads(r.payload) for r in conn.execute(sa.select(outbox.c.payload))]
    assert [(e["type"], e["data"]["activation_id"], e["data"]["reason"]) for e in events] == [
        ("activation.released", dead_cert.activation_id, "released_no_heartbeat")
    ]

    # It comes back: heartbeat and check-in both answer a signed `released` verdict for that very request.
    request = dead.request(labels.KIND_HEARTBEAT, activation_id=dead_cert.activation_id, created_at=clock())
    for call, blob in (
        ("heartbeat", request),
        ("check_in", dead.check_in(dead_cert.activation_id, created_at=clock())),
    ):
        with pytest.raises(LicensingError) as info:
            async with ActivationClient(vendor.url) as client:
                await getattr(client, call)(blob)
        assert info.value.code == ErrorCode.RELEASED and info.value.evidence is not None
        verdict = Verdict.open(info.value.evidence, vendor.public_key)
        assert (verdict.verdict, verdict.activation_id) == ("released", dead_cert.activation_id)

    # Its seat is free: a new instance (the kill -9'd container's replacement) takes it.
    service.update_license(lic["id"], {"max_activations": 2})
    assert (await _activate(vendor, key, Instance())).activation_id != dead_cert.activation_id


async def test_a_released_activation_is_taken_back_only_by_its_own_instance_with_a_seat_free(
    clocked_vendor: VendorHandle, clock: ManualClock
) -> None:
    """``revive``: no license key on the broker, so the request is signed with the key on record.
    A stranger's signature, a seat taken meanwhile, or an activation freed for another reason
    (deactivated, freed by the vendor) keep it released."""
    vendor, service = clocked_vendor, clocked_vendor.service
    lic, key = service.issue_license(features=["mqtt_server"], **TERMS)
    dead = Instance()
    cert = await _activate(vendor, key, dead)
    clock.advance(31)
    assert service.release_silent() == [cert.activation_id]

    async def revive(inst: Instance, activation_id: str) -> bytes:
        request = inst.request(labels.KIND_REVIVE, activation_id=activation_id, created_at=clock())
        async with ActivationClient(vendor.url) as client:
            return await client.revive(request)

    with pytest.raises(LicensingError) as info:
        await revive(Instance(), cert.activation_id)  # signed by another key than the one on record
    assert info.value.code == ErrorCode.INVALID_SIGNATURE
    replacement = await _activate(vendor, key, Instance())  # the one seat is taken meanwhile
    with pytest.raises(LicensingError) as info:
        await revive(dead, cert.activation_id)
    assert info.value.code == ErrorCode.NO_ACTIVATIONS_LEFT
    service.free_activation(replacement.activation_id)
    back = ActivationCertificate.open(await revive(dead, cert.activation_id), vendor.public_key)
    assert back.activation_id == cert.activation_id and back.valid_until == clock() + 30
    [act] = service.list_activations()
    assert act["id"] == cert.activation_id and act["active"]
    assert service.release_silent() == []  # taken back at this time: not silent

    service.free_activation(cert.activation_id)  # freed by the vendor: not the instance's to take back
    with pytest.raises(LicensingError) as info:
        await revive(dead, cert.activation_id)
    assert info.value.code == ErrorCode.ACTIVATION_NOT_FOUND and info.value.evidence is not None
    assert service.list_activations() == []


async def test_a_late_heartbeat_still_counts(clocked_vendor: VendorHandle, clock: ManualClock) -> None:
    """The server's arrival time is what counts: a heartbeat signed 5 s ago that arrives just inside
    release_after keeps the activation, and one more pass releases nothing."""
    vendor, service = clocked_vendor, clocked_vendor.service
    _lic, key = service.issue_license(features=["mqtt_server"], **TERMS)
    inst = Instance()
    cert = await _activate(vendor, key, inst)
    clock.advance(30)  # exactly release_after: not yet longer than it
    assert service.release_silent() == []
    await _beat(vendor, inst, cert, created_at=clock() - 5)
    clock.advance(29)
    assert service.release_silent() == []
    assert service.list_activations()[0]["active"]


async def test_changed_terms_ask_for_a_check_in(clocked_vendor: VendorHandle, clock: ManualClock) -> None:
    vendor, service = clocked_vendor, clocked_vendor.service
    lic, key = service.issue_license(features=["mqtt_server"], **TERMS)
    inst = Instance()
    cert = await _activate(vendor, key, inst)
    clock.advance(5)
    service.update_license(lic["id"], {"add_features": ["iot_bridge_snowflake"]})
    assert (await _beat(vendor, inst, cert, clock())).terms_changed
    service.set_status(lic["id"], "suspended")
    with pytest.raises(LicensingError) as info:
        await _beat(vendor, inst, cert, clock())
    assert info.value.code == ErrorCode.SUSPENDED and info.value.evidence is not None


async def test_without_terms_nothing_is_released(clocked_vendor: VendorHandle, clock: ManualClock) -> None:
    vendor, service = clocked_vendor, clocked_vendor.service
    _lic, key = service.issue_license(features=["mqtt_server"])
    cert = await _activate(vendor, key, Instance())
    assert cert.heartbeat_interval is None and cert.release_after is None
    clock.advance(10 * 86400)
    assert service.release_silent() == []


def test_cli_flags_round_trip_and_refuse_in_one_line(tmp_path: Path, capsys: Any) -> None:
    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    data = str(tmp_path / "v")
    assert run("vendor", "init", data)[0] == 0
    issue = ("vendor", "issue", "--data", data, "--features", "mqtt_server")
    code, out, err = run(*issue, "--heartbeat-interval", "60", "--release-after", "100")
    assert code != 0 and out == ""
    [line] = err.strip().splitlines()  # one line, naming the rule
    assert "more than 2 x heartbeat_interval" in line
    assert run(*issue, "--heartbeat-interval", "60", "--release-after", "300")[0] == 0
    [lic] = json.loads(run("vendor", "licenses", "--data", data, "--json")[1])
    assert (lic["heartbeat_interval"], lic["release_after"]) == (60, 300)
    shown = run("vendor", "show", lic["id"], "--data", data)[1]
    assert "heartbeats:      every 60 s; released after 300 s silent" in shown
    assert run("vendor", "update", lic["id"], "--data", data, "--release-after", "none")[0] == 0
    shown = run("vendor", "show", lic["id"], "--data", data)[1]
    assert "every 60 s; never released" in shown
    code, _out, err = run(
        "vendor", "update", lic["id"], "--data", data, "--heartbeat-interval", "0", "--release-after", "90"
    )
    assert code != 0 and len(err.strip().splitlines()) == 1 and "needs a heartbeat_interval" in err
    template = ("vendor", "template", "add", "fleet", "--data", data, "--features", "mqtt_server")
    assert run(*template, "--heartbeat-interval", "30", "--release-after", "90")[0] == 0
    assert run("vendor", "issue", "--data", data, "--template", "fleet")[0] == 0
    terms = {
        (x["heartbeat_interval"], x["release_after"])
        for x in json.loads(run("vendor", "licenses", "--data", data, "--json")[1])
    }
    assert (30, 90) in terms


async def test_terms_added_later_release_nobody_before_they_were_told(
    clocked_vendor: VendorHandle, clock: ManualClock
) -> None:
    """A broker checking in daily under a license that gets heartbeat terms sends no heartbeat until
    its next check-in brings them: silence before that is not death."""
    vendor, service = clocked_vendor, clocked_vendor.service
    lic, key = service.issue_license(features=["mqtt_server"])
    inst = Instance()
    cert = await _activate(vendor, key, inst)
    service.update_license(lic["id"], TERMS)
    clock.advance(3600)  # an hour of silence: it was never told to heartbeat
    assert service.release_silent() == []
    async with ActivationClient(vendor.url) as client:  # its check-in brings the terms
        blob = await client.check_in(inst.check_in(cert.activation_id, chain=cert.chain, created_at=clock()))
    assert ActivationCertificate.open(blob, vendor.public_key).release_after == 30
    clock.advance(31)
    assert service.release_silent() == [cert.activation_id]
