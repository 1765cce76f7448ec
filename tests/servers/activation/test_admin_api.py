"""The admin API: bearer token on every route, and bad input answered with a code, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqtt_licensing.core.signing import b64
from tests.helpers.activation import VendorHandle, start_vendor

from .conftest import Instance


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: Any) -> Any:
    """One service for this module, reached in-process: these tests are many and independent of
    each other's licenses."""
    with start_vendor(tmp_path_factory.mktemp("vendor"), serve=False) as handle:
        yield handle


ADMIN_ROUTES = [
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"]}),
    ("GET", "/v1/admin/licenses", None),
    ("GET", "/v1/admin/licenses/lic_x", None),
    ("PATCH", "/v1/admin/licenses/lic_x", {"add_features": ["mqtt_server"]}),
    ("GET", "/v1/admin/activations", None),
    ("DELETE", "/v1/admin/activations/act_x", None),
    ("POST", "/v1/admin/offline/activations", {"request_code": "x"}),
    ("POST", "/v1/admin/offline/deactivations", {"code": "x"}),
    ("POST", "/v1/admin/floating/certificates", {"request_code": "x"}),
]


@pytest.mark.parametrize("method, path, body", ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES])
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", "Basic abc", "Bearer"], ids=["none", "wrong", "basic", "empty"]
)
async def test_admin_routes_need_the_token(
    http: Any, vendor: VendorHandle, method: str, path: str, body: Any, header: str | None
) -> None:
    before = vendor.service.list_licenses()
    headers = {"Authorization": header} if header else {}
    response = await http.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert vendor.service.list_licenses() == before  # nothing was created


async def test_admin_license_lifecycle(admin_http: Any) -> None:
    created = await admin_http.post(
        "/v1/admin/licenses",
        json={
            "features": ["mqtt_server_support", "mqtt_server"],
            "max_activations": 2,
            "expires_at": 2_000_000_000,
            "support_until": 1_900_000_000,
            "max_connections": 100,
        },
    )
    assert created.status_code == 201
    lic, key = created.json()["license"], created.json()["key"]
    assert key.startswith("MQL1-") and key not in json.dumps(lic)
    assert lic["id"].startswith("lic_") and lic["features"] == ["mqtt_server", "mqtt_server_support"]
    assert lic["key_mask"].startswith("MQL1-") and "*****" in lic["key_mask"]
    assert lic["model"] == "online" and lic["status"] == "active" and lic["seats"] is None

    listed = (await admin_http.get("/v1/admin/licenses")).json()["licenses"]
    assert lic["id"] in [entry["id"] for entry in listed]

    inst = Instance()
    act = (await admin_http.post("/v1/activations", json=inst.activation_body(key))).json()
    shown = (await admin_http.get(f"/v1/admin/licenses/{lic['id']}")).json()["license"]
    assert shown["activations_used"] == 1 and shown["activations"][0]["id"] == act["activation_id"]
    assert shown["activations"][0]["instance_fingerprint"] == inst.fingerprint

    patched = (
        await admin_http.patch(
            f"/v1/admin/licenses/{lic['id']}",
            json={
                "add_features": ["iot_bridge_snowflake"],
                "remove_features": ["mqtt_server_support"],
                "max_connections": None,
                "max_activations": 5,
                "status": "suspended",
            },
        )
    ).json()["license"]
    assert patched["features"] == ["iot_bridge_snowflake", "mqtt_server"]
    assert patched["max_connections"] is None and patched["max_activations"] == 5
    assert patched["status"] == "suspended" and patched["expires_at"] == 2_000_000_000

    by_license = (await admin_http.get("/v1/admin/activations", params={"license_id": lic["id"]})).json()
    assert len(by_license["activations"]) == 1
    freed = await admin_http.delete(f"/v1/admin/activations/{act['activation_id']}")
    assert freed.status_code == 200 and freed.json()["freed"] is True
    live = (await admin_http.get("/v1/admin/activations", params={"license_id": lic["id"]})).json()
    assert live["activations"] == []
    all_acts = (
        await admin_http.get("/v1/admin/activations", params={"license_id": lic["id"], "include_freed": "1"})
    ).json()
    assert all_acts["activations"][0]["freed_reason"] == "freed_by_vendor"

    missing = await admin_http.get("/v1/admin/licenses/lic_missing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


_KEY = "MQL1-00000-00000-00000-00000-00000-00000"
BAD_PUBLIC = [
    ("/v1/activations", b"not json"),
    ("/v1/activations", b"[1, 2]"),
    ("/v1/activations", b"null"),
    ("/v1/activations", b"{}"),
    ("/v1/activations", json.dumps({"license_key": 5, "request": "AA"}).encode()),
    ("/v1/activations", json.dumps({"license_key": _KEY, "request": 12}).encode()),
    ("/v1/activations", json.dumps({"license_key": ["x"], "request": "AA"}).encode()),
    ("/v1/activations/check-in", b'{"request": "!!!!"}'),
    ("/v1/activations/check-in", json.dumps({"request": b64(b"\x93\x01\x02\x03")}).encode()),
    ("/v1/activations/check-in", json.dumps({"request": b64(b"\xc1garbage")}).encode()),
    ("/v1/activations/check-in", json.dumps({"request": {"a": 1}}).encode()),
    ("/v1/activations/deactivate", json.dumps({"request": True}).encode()),
    ("/v1/activations/deactivate", b'{"request": "\\u0000"}'),
    ("/v1/floating/activations", json.dumps({"license_key": None, "request": "AA"}).encode()),
    ("/v1/floating/check-in", b"{"),
]


@pytest.mark.parametrize("path, body", BAD_PUBLIC)
async def test_malformed_public_requests_get_400_with_code(http: Any, path: str, body: bytes) -> None:
    response = await http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in {
        "bad_request",
        "invalid_field",
        "invalid_code",
        "wrong_document",
        "invalid_key",
    }


BAD_ADMIN = [
    ("POST", "/v1/admin/licenses", {}),
    ("POST", "/v1/admin/licenses", {"features": "mqtt_server"}),
    ("POST", "/v1/admin/licenses", {"features": ["nope"]}),
    ("POST", "/v1/admin/licenses", {"features": []}),
    ("POST", "/v1/admin/licenses", {"features": [1, 2]}),
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"], "max_activations": "3"}),
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"], "max_activations": True}),
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"], "max_activations": 0}),
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"], "max_activations": 10**30}),
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"], "expires_at": 1.5}),
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"], "model": "lifetime"}),
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"], "model": "floating"}),
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"], "seats": 3}),
    ("POST", "/v1/admin/licenses", {"features": ["mqtt_server"], "max_connection": 3}),
    ("PATCH", "/v1/admin/licenses/{id}", {"status": "paused"}),
    ("PATCH", "/v1/admin/licenses/{id}", {"add_feature": ["mqtt_server"]}),
    ("PATCH", "/v1/admin/licenses/{id}", {"add_features": "mqtt_server"}),
    ("PATCH", "/v1/admin/licenses/{id}", {"remove_features": ["mqtt_server"]}),
    ("PATCH", "/v1/admin/licenses/{id}", {"max_activations": None}),
    ("PATCH", "/v1/admin/licenses/{id}", {"seats": 4}),
    ("PATCH", "/v1/admin/licenses/{id}", {"expires_at": "tomorrow"}),
    ("PATCH", "/v1/admin/licenses/{id}", [1]),
    ("POST", "/v1/admin/offline/activations", {}),
    ("POST", "/v1/admin/offline/activations", {"request_code": 7}),
    ("POST", "/v1/admin/offline/activations", {"request_code": "hello"}),
    ("POST", "/v1/admin/offline/deactivations", {"code": ["x"]}),
    ("POST", "/v1/admin/floating/certificates", {"request_code": "-----BEGIN X-----\n=AAAA\n-----END X-----"}),
]


@pytest.mark.parametrize("method, path, body", BAD_ADMIN)
async def test_malformed_admin_requests_get_400_with_code(
    admin_http: Any, vendor: VendorHandle, method: str, path: str, body: Any
) -> None:
    lic, _key = vendor.issue_license(features=["mqtt_server"])
    response = await admin_http.request(method, path.format(id=lic["id"]), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in {"bad_request", "invalid_field", "invalid_code", "wrong_document"}


async def test_unknown_route_and_method(http: Any) -> None:
    missing = await http.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await http.get("/v1/activations")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "bad_request"


async def test_oversized_body(http: Any) -> None:
    response = await http.post(
        "/v1/activations", content=b"{" + b" " * 300_000 + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
