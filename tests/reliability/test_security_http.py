"""Security of the servers' HTTP APIs, against real servers.

* brute force: unknown keys are rate-limited by the vendor (HTTP 429 ``rate_limited``), also
  through the agent and under a concurrent burst;
* admin APIs of both servers: every admin route answers 401 without or with a wrong token.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.keys import format_key, key_digest
from mqtt_licensing.core.signing import b64
from tests.helpers.activation import start_vendor
from tests.helpers.broker import (
    start_broker,
)
from tests.helpers.floating import start_floating

# -- brute force ----------------------------------------------------------------------------------


def _attempt(url: str, key: str, identity: Ed25519PrivateKey, path: str = "/v1/activations") -> httpx.Response:
    kind = labels.KIND_ACTIVATE if path == "/v1/activations" else labels.KIND_FLOATING_ACTIVATE
    try:
        digest = key_digest(key)
    except LicensingError:
        digest = "0" * 64
    request = sign_instance_request(
        identity, kind=kind, nonce=secrets.token_hex(16), created_at=int(time.time()), key_digest=digest
    )
    return httpx.post(url + path, json={"license_key": key, "request": b64(request)}, timeout=10)


def test_brute_force_keys_are_rate_limited(tmp_path):
    identity = Ed25519PrivateKey.generate()
    with start_vendor(tmp_path / "vendor") as vendor:
        good = vendor.issue()
        codes = []
        for i in range(14):
            key = format_key(secrets.token_bytes(15)) if i % 3 else "MQL1-" + secrets.token_hex(15).upper()
            response = _attempt(vendor.url, key, identity)
            codes.append((response.status_code, response.json()["error"]["code"]))
        first, rest = codes[:10], codes[10:]
        assert all(code in ("key_not_found", "invalid_key") for _, code in first), first
        assert rest == [(429, "rate_limited")] * 4, rest
        # while limited, a valid key from the same source is refused too (no oracle), on every route
        for path in ("/v1/activations", "/v1/floating/activations"):
            response = _attempt(vendor.url, good, identity, path)
            assert (response.status_code, response.json()["error"]["code"]) == (429, "rate_limited")
        assert vendor.service.list_activations() == []


@pytest.mark.timeout(60)
def test_brute_force_burst_is_rate_limited_too(tmp_path):
    """120 unknown keys at once from one source: the limit holds under concurrency."""
    identity = Ed25519PrivateKey.generate()
    with start_vendor(tmp_path / "vendor") as vendor:

        async def burst() -> Counter[str]:
            async with httpx.AsyncClient(
                base_url=vendor.url, timeout=30, limits=httpx.Limits(max_connections=200)
            ) as http:

                async def one() -> str:
                    key = format_key(secrets.token_bytes(15))
                    request = sign_instance_request(
                        identity,
                        kind=labels.KIND_ACTIVATE,
                        nonce=secrets.token_hex(16),
                        created_at=int(time.time()),
                        key_digest=key_digest(key),
                    )
                    response = await http.post("/v1/activations", json={"license_key": key, "request": b64(request)})
                    return response.json()["error"]["code"]

                return Counter(await asyncio.gather(*(one() for _ in range(120))))

        counts = asyncio.run(burst())
    print(f"burst of 120: {dict(counts)}")
    assert set(counts) <= {"key_not_found", "rate_limited"}
    assert counts["key_not_found"] <= 10, f"{counts['key_not_found']} unknown keys were looked up (limit 10)"


def test_brute_force_through_the_agent_is_rate_limited(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker, broker.admin() as admin:
        codes = []
        for _ in range(12):
            with pytest.raises(LicensingError) as err:
                admin.request("activate", {"license_key": format_key(secrets.token_bytes(15))})
            codes.append(str(err.value.code))
    assert codes == ["key_not_found"] * 10 + ["rate_limited"] * 2


# -- admin APIs ------------------------------------------------------------------------------------

BAD_AUTH = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Token {token}"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Basic {token}"},
    {"Authorization": "{token}"},
    {"Authorization": "Bearer {token}x"},
    {"Authorization": "Bearer x{token}"},
    {"Authorization": "Bearer {upper}"},
    {"Authorization": "Bearer {half}"},
    {"X-Admin-Token": "{token}"},
    {"Cookie": "token={token}"},
]


def _routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        for method in sorted(route.methods or []):
            if method != "HEAD":
                out.append((method, route.path.replace("{license_id}", "lic_x").replace("{activation_id}", "act_x")))
    return out


def _check_admin_routes(base_url: str, token: str, app, public: set[str]) -> int:
    routes = _routes(app)
    admin_routes = [(m, p) for m, p in routes if "/admin/" in p]
    assert admin_routes
    assert {p for _, p in routes} - {p for _, p in admin_routes} == public, "a new route outside /v1/admin/"
    checked = 0
    with httpx.Client(base_url=base_url, timeout=10) as http:
        for method, path in admin_routes:
            for headers in BAD_AUTH:
                headers = {
                    k: v.format(token=token, upper=token.upper(), half=token[: len(token) // 2])
                    for k, v in headers.items()
                }
                for params in ({}, {"token": token}):
                    response = http.request(method, path, headers=headers, params=params, json={"features": ["x"]})
                    assert response.status_code == 401, (method, path, headers, response.status_code)
                    assert response.json()["error"]["code"] == "unauthorized"
                    checked += 1
            ok = http.request(method, path, headers={"Authorization": f"Bearer {token}"}, json={})
            assert ok.status_code != 401, (method, path)  # the right token does get through
    return checked


def test_admin_apis_refuse_every_route_without_the_right_token(tmp_path):
    from mqtt_licensing.servers.activation.app import create_app as vendor_app
    from mqtt_licensing.servers.floating.app import create_app as floating_app

    with start_vendor(tmp_path / "vendor") as vendor:
        n = _check_admin_routes(
            vendor.url,
            vendor.token,
            vendor_app(vendor.service, vendor.token),
            {
                "/v1/health",
                "/v1/noop",
                "/v1/activations",
                "/v1/activations/check-in",
                "/v1/activations/deactivate",
                "/v1/activations/heartbeat",  # signed by the instance, verified against the key on record
                "/v1/activations/revive",  # the same: only the instance on record takes its activation back
                "/v1/floating/activations",
                "/v1/floating/check-in",
                "/v1/usage",  # signed usage reports, verified against the key on record
                "/v1/floating/usage",  # issue 16: a batch signed by the floating server, records by their brokers
                "/v1/trials",  # issue 10: self-signed, fresh, once; answers only when it first saw that instance
                "/v1/keys",  # the vendor's key rotations: each document is signed, sites verify them
                "/metrics",  # open in an app built without protect_metrics; `vendor serve` guards it
            },
        )
    with start_floating(tmp_path / "fls", vendor_key=Ed25519PrivateKey.generate()) as fls:
        n += _check_admin_routes(
            fls.url,
            fls.token,
            floating_app(fls.service, fls.token),
            {
                "/v1/leases",
                "/v1/leases/renew",
                "/v1/leases/release",
                "/v1/usage",  # issue 16: records signed by a lease holder, verified against its key on record
                "/v1/health",
                "/v1/noop",
                "/metrics",
            },
        )
    print(f"{n} unauthorised admin calls, all 401")
    for path in (tmp_path / "vendor" / "admin.token", tmp_path / "fls" / "admin.token"):
        assert path.stat().st_mode & 0o777 == 0o600
