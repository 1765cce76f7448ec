"""Fixtures for the vendor server tests: a real server on 127.0.0.1 and instance identities."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import armor
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.core.signing import b64, fingerprint
from tests.helpers.activation import VendorHandle, start_vendor


class Instance:
    """A broker instance (or floating server) identity that signs its own requests."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.fingerprint = fingerprint(self.key)

    def request(self, kind: str, *, created_at: int | None = None, nonce: str | None = None, **fields: Any) -> bytes:
        return sign_instance_request(
            self.key,
            kind=kind,
            nonce=nonce or secrets.token_hex(8),
            created_at=int(time.time()) if created_at is None else created_at,
            **fields,
        )

    def activate(self, license_key: str, **kw: Any) -> bytes:
        return self.request(labels.KIND_ACTIVATE, key_digest=key_digest(license_key), **kw)

    def check_in(self, activation_id: str, **kw: Any) -> bytes:
        return self.request(labels.KIND_CHECK_IN, activation_id=activation_id, **kw)

    def deactivate(self, activation_id: str, **kw: Any) -> bytes:
        return self.request(labels.KIND_DEACTIVATE, activation_id=activation_id, **kw)

    def offline_request_code(self, license_key: str, **kw: Any) -> str:
        blob = self.request(labels.KIND_OFFLINE_REQUEST, key_digest=key_digest(license_key), **kw)
        return armor(labels.USAGE_REQUEST, blob)

    def deactivation_code(self, activation_id: str, license_id: str | None = None) -> str:
        blob = self.request(labels.KIND_OFFLINE_DEACTIVATION, activation_id=activation_id, license_id=license_id)
        return armor(labels.DEACTIVATION_CODE, blob)

    def floating_request_code(self, license_key: str) -> str:
        blob = self.request(labels.KIND_FLOATING_REQUEST, key_digest=key_digest(license_key))
        return armor(labels.FLOATING_REQUEST, blob)

    def activation_body(self, license_key: str, **kw: Any) -> dict[str, str]:
        return {"license_key": license_key, "request": b64(self.activate(license_key, **kw))}


class ManualClock:
    """A clock tests move by hand; starts at the real time so signed requests stay fresh."""

    def __init__(self) -> None:
        self.now = int(time.time())

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


@pytest.fixture
def vendor(tmp_path: Any, database_url: str | None) -> Iterator[VendorHandle]:
    """On SQLite and on PostgreSQL (tests/servers/conftest.py)."""
    with start_vendor(tmp_path / "vendor", certificate_lifetime=60, database_url=database_url) as handle:
        yield handle


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_vendor(tmp_path: Any, clock: ManualClock, database_url: str | None) -> Iterator[VendorHandle]:
    with start_vendor(tmp_path / "vendor", certificate_lifetime=60, clock=clock, database_url=database_url) as handle:
        yield handle


@pytest.fixture
async def http(vendor: VendorHandle) -> Any:
    """The vendor's app in-process: a socket adds nothing to what these tests check."""
    async with vendor.client() as client:
        yield client


@pytest.fixture
async def admin_http(vendor: VendorHandle) -> Any:
    async with vendor.client(admin=True) as client:
        yield client
