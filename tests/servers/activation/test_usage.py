"""Usage records at the vendor (issue 16): stored once per (instance, sequence), receipted with a
signed UsageAck, summed per license per day; over HTTP (in-process) and through the CLI."""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from mqtt_licensing.core import labels
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import b64, unb64
from mqtt_licensing.core.usage_documents import UsageAck, UsageRecord
from tests.helpers.activation import VendorHandle

from .conftest import Instance

DAY1 = 1_900_000_000 - 1_900_000_000 % 86400  # 2030-03-17 00:00 UTC


def record(inst: Instance, sequence: int, *, start: int = DAY1, messages: int = 10, **kw: Any) -> bytes:
    fields: dict[str, Any] = {
        "period_start": start,
        "period_end": start + 60,
        "messages": messages,
        "bytes": messages * 100,
    }
    fields["client_seconds"] = 60
    fields.update(kw)
    return UsageRecord(instance_fingerprint=inst.fingerprint, sequence=sequence, **fields).sign(inst.key)


def activated(vendor: VendorHandle) -> tuple[Instance, str, str]:
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"])
    inst = Instance()
    activation = vendor.service.activate(key, inst.activate(key))
    return inst, activation.activation_id, activation.license_id


def report(vendor: VendorHandle, inst: Instance, activation_id: str, blobs: list[bytes], nonce: str = "") -> UsageAck:
    nonce = nonce or secrets.token_hex(8)
    request = inst.request(labels.KIND_USAGE_REPORT, activation_id=activation_id, nonce=nonce)
    ack = UsageAck.open(vendor.service.report_usage(request, blobs), vendor.public_key)
    assert ack.request_nonce == nonce and ack.instance_fingerprint == inst.fingerprint
    return ack


def test_each_record_counts_once_however_often_it_arrives(vendor: VendorHandle) -> None:
    inst, act, lic = activated(vendor)
    blobs = [record(inst, n, messages=n) for n in (1, 2, 3)]
    assert report(vendor, inst, act, blobs).sequences == (1, 2, 3)
    again = report(vendor, inst, act, blobs[1:])  # a lost receipt: the agent sends them again
    assert again.sequences == (2, 3) and again.missing == ()
    days = vendor.service.usage_by_day(lic)["days"]
    assert days == [
        {"day": "2030-03-17", "messages": 6, "bytes": 600, "client_seconds": 180, "client_hours": 0.05, "records": 3}
    ]


def test_a_replayed_report_changes_nothing(vendor: VendorHandle) -> None:
    """The very same signed request and records sent twice: acknowledged, never counted twice."""
    inst, act, lic = activated(vendor)
    request = inst.request(labels.KIND_USAGE_REPORT, activation_id=act)
    blobs = [record(inst, 1, messages=7)]
    vendor.service.report_usage(request, blobs)
    before = vendor.service.usage_by_day(lic)
    UsageAck.open(vendor.service.report_usage(request, blobs), vendor.public_key)
    assert vendor.service.usage_by_day(lic) == before
    assert before["days"][0]["messages"] == 7


def test_gaps_are_visible(vendor: VendorHandle) -> None:
    inst, act, lic = activated(vendor)
    ack = report(vendor, inst, act, [record(inst, 1), record(inst, 4)])
    assert ack.missing == (2, 3)
    assert vendor.service.usage_by_day(lic)["missing"] == {inst.fingerprint: [2, 3]}
    assert report(vendor, inst, act, [record(inst, 2), record(inst, 3)]).missing == ()


def test_a_record_signed_by_another_key_is_refused_and_nothing_is_stored(vendor: VendorHandle) -> None:
    inst, act, lic = activated(vendor)
    forged = UsageRecord(
        instance_fingerprint=inst.fingerprint, sequence=2, period_start=DAY1, period_end=DAY1 + 1,
        messages=10**9, bytes=0, client_seconds=0,
    ).sign(Ed25519PrivateKey.generate())  # fmt: skip
    with pytest.raises(LicensingError) as err:
        report(vendor, inst, act, [record(inst, 1), forged])
    assert err.value.code == ErrorCode.INVALID_SIGNATURE
    assert vendor.service.usage_by_day(lic)["days"] == []  # one transaction


def test_another_instances_records_cannot_be_charged_to_this_license(vendor: VendorHandle) -> None:
    inst, act, _lic = activated(vendor)
    other = Instance()
    with pytest.raises(LicensingError) as err:
        report(vendor, inst, act, [record(other, 1)])
    assert err.value.code == ErrorCode.INVALID_SIGNATURE


def test_a_stale_report_request_is_refused(vendor: VendorHandle) -> None:
    inst, act, _lic = activated(vendor)
    request = inst.request(labels.KIND_USAGE_REPORT, activation_id=act, created_at=int(time.time()) - 3600)
    with pytest.raises(LicensingError) as err:
        vendor.service.report_usage(request, [record(inst, 1)])
    assert err.value.code == ErrorCode.BAD_REQUEST


async def test_http_report_and_admin_usage(vendor: VendorHandle, http: Any, admin_http: Any) -> None:
    inst, act, lic = activated(vendor)
    request = inst.request(labels.KIND_USAGE_REPORT, activation_id=act, nonce="n1")
    body = {"request": b64(request), "records": [b64(record(inst, 1, start=DAY1 + 86400, messages=5))]}
    answer = await http.post("/v1/usage", json=body)
    assert answer.status_code == 200, answer.text
    assert UsageAck.open(unb64(answer.json()["ack"]), vendor.public_key).sequences == (1,)
    assert (await http.get(f"/v1/admin/licenses/{lic}/usage")).status_code == 401
    usage = (await admin_http.get(f"/v1/admin/licenses/{lic}/usage", params={"from": "2030-03-18"})).json()["usage"]
    assert [d["messages"] for d in usage["days"]] == [5]
    assert (await admin_http.get(f"/v1/admin/licenses/{lic}/usage", params={"to": "2030-03-17"})).json()["usage"][
        "days"
    ] == []
    bad = await admin_http.get(f"/v1/admin/licenses/{lic}/usage", params={"from": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"


def test_cli_usage_json_and_csv(vendor: VendorHandle, capsys: Any) -> None:
    inst, act, lic = activated(vendor)
    report(vendor, inst, act, [record(inst, 1, messages=3), record(inst, 2, start=DAY1 + 86400, messages=4)])
    data = str(vendor.data_dir)
    capsys.readouterr()
    assert main(["vendor", "usage", lic, "--data", data, "--json"]) == 0
    usage = json.loads(capsys.readouterr().out)
    assert [(d["day"], d["messages"]) for d in usage["days"]] == [("2030-03-17", 3), ("2030-03-18", 4)]
    assert main(["vendor", "usage", lic, "--data", data, "--csv", "--from", "2030-03-18"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["day"], r["messages"], r["bytes"]) for r in rows] == [("2030-03-18", "4", "400")]
    assert main(["vendor", "usage", lic, "--data", data]) == 0
    assert "2030-03-17" in capsys.readouterr().out
