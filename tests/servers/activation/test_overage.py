"""A license's connection overage (issue 11): admin API terms, carried in every signed certificate."""

from __future__ import annotations

from typing import Any

import pytest

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.admin import VendorAdminClient
from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import unarmor
from mqtt_licensing.core.documents import ActivationCertificate, FloatingCertificate
from tests.helpers.activation import VendorHandle

from .conftest import Instance


async def test_admin_api_sets_and_changes_the_overage(admin_http: Any) -> None:
    created = await admin_http.post(
        "/v1/admin/licenses", json={"features": ["mqtt_server"], "max_connections": 4, "overage": 0.5}
    )
    assert created.status_code == 201
    lic = created.json()["license"]
    assert lic["overage"] == 0.5
    plain = (await admin_http.post("/v1/admin/licenses", json={"features": ["mqtt_server"]})).json()["license"]
    assert plain["overage"] == 0.0  # default: no headroom
    patched = await admin_http.patch(f"/v1/admin/licenses/{lic['id']}", json={"overage": 1})
    assert patched.json()["license"]["overage"] == 1.0
    cleared = await admin_http.patch(f"/v1/admin/licenses/{lic['id']}", json={"overage": None})
    assert cleared.json()["license"]["overage"] == 0.0
    shown = (await admin_http.get(f"/v1/admin/licenses/{lic['id']}")).json()["license"]
    assert shown["overage"] == 0.0


@pytest.mark.parametrize("bad", ["1.01", "-0.1", '"0.1"', "true", "[0.1]", "1e999", "NaN"])
async def test_overage_outside_0_to_1_is_a_bad_request(admin_http: Any, vendor: VendorHandle, bad: str) -> None:
    before = vendor.service.list_licenses()
    json_type = {"content-type": "application/json"}
    body = '{"features": ["mqtt_server"], "overage": ' + bad + "}"
    created = await admin_http.post("/v1/admin/licenses", content=body, headers=json_type)
    assert created.status_code == 400 and created.json()["error"]["code"] == "bad_request"
    assert "overage must be a number from 0 to 1" in created.json()["error"]["message"]
    assert vendor.service.list_licenses() == before
    lic, _key = vendor.issue_license(features=["mqtt_server"], overage=0.25)
    patched = await admin_http.patch(
        f"/v1/admin/licenses/{lic['id']}", content='{"overage": ' + bad + "}", headers=json_type
    )
    assert patched.status_code == 400
    assert vendor.service.get_license(lic["id"])["overage"] == 0.25


async def test_online_offline_and_floating_certificates_carry_the_overage(vendor: VendorHandle) -> None:
    online, online_key = vendor.issue_license(features=["mqtt_server"], max_connections=4, overage=0.5)
    _offline, offline_key = vendor.issue_license(features=["mqtt_server"], model="offline", overage=0.1)
    _floating, floating_key = vendor.issue_license(features=["mqtt_server"], model="floating", seats=2, overage=1)
    inst = Instance()
    async with ActivationClient(vendor.url) as client:
        result = await client.activate(online_key, inst.activate(online_key))
        cert = ActivationCertificate.open(result["certificate"], vendor.public_key)
        assert (cert.max_connections, cert.overage) == (4, 0.5)
        vendor.service.update_license(online["id"], {"overage": 0.25})
        renewed = ActivationCertificate.open(
            await client.check_in(inst.check_in(cert.activation_id, chain=cert.chain)), vendor.public_key
        )
        assert renewed.overage == 0.25  # a check-in (reactivate) brings the new terms
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        usage = (await admin.offline_activate(Instance().offline_request_code(offline_key)))["usage_license"]
        assert ActivationCertificate.open(unarmor(usage, labels.USAGE_LICENSE), vendor.public_key).overage == 0.1
        issued = (await admin.floating_issue(Instance().floating_request_code(floating_key)))["certificate"]
        floating = FloatingCertificate.open(unarmor(issued, labels.FLOATING_CERTIFICATE), vendor.public_key)
        assert floating.overage == 1.0
