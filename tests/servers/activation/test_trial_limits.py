"""POST /v1/trials from self-signed identities in a loop (issue 20 row 17).

Main stored one permanent row per new identity, from anyone, at any rate (about 1.2 M rows an
hour from one client). Now new identities are limited per source: a burst per rate-limit window
and a total quota of rows; an instance already on record is always answered."""

from __future__ import annotations

from collections import Counter

import httpx
import sqlalchemy as sa

from mqtt_licensing.core import labels
from mqtt_licensing.core.signing import b64
from mqtt_licensing.servers.activation.schema import trials
from tests.helpers.activation import VendorHandle

from .conftest import Instance


def _post(vendor: VendorHandle, instance: Instance) -> httpx.Response:
    return httpx.post(vendor.url + "/v1/trials", json={"request": b64(instance.request(labels.KIND_TRIAL))})


def _rows(vendor: VendorHandle) -> int:
    with vendor.service.store.transaction() as tx:
        return int(tx.conn.execute(sa.select(sa.func.count()).select_from(trials)).scalar_one())


def test_new_trial_identities_from_one_source_are_limited(vendor: VendorHandle) -> None:
    vendor.service.reconfigure(trial_limit_burst=10)
    first = Instance()
    assert _post(vendor, first).status_code == 200
    answers = [_post(vendor, Instance()) for _ in range(40)]
    codes = Counter(r.json().get("error", {}).get("code", "ok") for r in answers)
    assert codes == {"ok": 9, "rate_limited": 31}, codes
    assert _rows(vendor) == 10
    assert _post(vendor, first).status_code == 200  # known instances are still answered


def test_a_source_has_a_total_quota_of_trial_rows(vendor: VendorHandle) -> None:
    vendor.service.reconfigure(trial_limit_burst=1000, trial_limit_total=25)
    codes = Counter(_post(vendor, Instance()).status_code for _ in range(40))
    assert codes == {200: 25, 429: 15}, codes
    assert _rows(vendor) == 25
