"""The vendor's webhook events of trials and usage gaps: queued in the transaction that learns of
them, once each (servers/webhooks)."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from mqtt_licensing.core import labels
from mqtt_licensing.servers.webhooks import Webhooks
from mqtt_licensing.servers.webhooks.schema import outbox
from tests.helpers.activation import VendorHandle

from .conftest import Instance
from .test_usage import activated, record, report


def queued(vendor: VendorHandle, event_type: str) -> list[dict[str, Any]]:
    with vendor.service.store.engine.begin() as conn:
        rows = conn.execute(sa.select(outbox.c.payload).where(outbox.c.event_type == event_type)).all()
    return [json.loads(r.payload)["data"] for r in rows]


def hook(vendor: VendorHandle, *events: str) -> None:
    Webhooks(vendor.service.store.engine).add("http://127.0.0.1:9/hook", list(events), int(time.time()))


def test_a_trial_the_vendor_learns_of_is_announced_once(vendor: VendorHandle) -> None:
    hook(vendor, "trial.started")
    inst = Instance()
    vendor.service.record_trial(inst.request(labels.KIND_TRIAL))
    vendor.service.record_trial(inst.request(labels.KIND_TRIAL))  # the same instance again: no second event
    (event,) = queued(vendor, "trial.started")
    assert event["instance_fingerprint"] == inst.fingerprint and event["started_at"]


def test_a_gap_in_an_instances_usage_chain_is_announced_when_it_opens(vendor: VendorHandle) -> None:
    hook(vendor, "usage.gap")
    inst, act, lic = activated(vendor)
    report(vendor, inst, act, [record(inst, 1), record(inst, 2)])
    assert queued(vendor, "usage.gap") == []  # no hole
    report(vendor, inst, act, [record(inst, 5), record(inst, 3)])  # out of order within a batch: 4 is missing
    (gap,) = queued(vendor, "usage.gap")
    assert gap["missing"] == [4] and gap["license_id"] == lic and gap["activation_id"] == act
    report(vendor, inst, act, [record(inst, 6)])  # the known hole is not announced again
    report(vendor, inst, act, [record(inst, 4)])  # filled
    assert len(queued(vendor, "usage.gap")) == 1
