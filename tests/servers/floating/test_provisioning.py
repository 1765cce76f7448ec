"""Provisioning a floating server offline, by codes (in process and with the CLI), its status and
offline deactivation; and what install refuses. Online against the real vendor server:
test_provisioning_online.py."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import armor, unarmor
from mqtt_licensing.core.documents import open_instance_request, verify_lease
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import format_key, key_digest
from mqtt_licensing.core.signing import public_key_to_text
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.floating import make_pool_certificate, start_floating
from tests.servers.floating.conftest import cli, join_token

pytestmark = pytest.mark.timeout(60)

LICENSE_KEY = format_key(bytes(range(15)))


def _offline_request(service, key: str = LICENSE_KEY):
    blob = service.offline_request(key)
    request = open_instance_request(blob, labels.KIND_FLOATING_REQUEST)
    return blob, request


def test_offline_request_then_install(tmp_path, vendor):
    service = FloatingService.open(tmp_path / "fls")
    try:
        blob, request = _offline_request(service)
        assert request.public_key == service.public_key and request.key_digest == key_digest(LICENSE_KEY)
        assert service.status()["pending_request"] is True
        cert = make_pool_certificate(vendor, request.public_key, seats=4, request_nonce=request.nonce)
        installed = service.install_certificate(cert, offline=True, vendor_public_key=vendor.public_key())
        assert installed.seats == 4
        status = service.status()
        assert status["provisioned"] and not status["pending_request"]
        assert status["pool"]["seats"] == 4 and status["seats"]["free"] == 4
        assert (tmp_path / "fls" / "vendor.pub").read_text().strip() == public_key_to_text(vendor)
    finally:
        service.close()


def test_install_refusals(tmp_path, vendor):
    service = FloatingService.open(tmp_path / "fls")
    other_server = Ed25519PrivateKey.generate()
    pub = vendor.public_key()
    try:
        # nothing pending yet
        cert = make_pool_certificate(vendor, service.public_key, request_nonce="x")
        with pytest.raises(LicensingError) as err:
            service.install_certificate(cert, offline=True, vendor_public_key=pub)
        assert err.value.code == ErrorCode.NO_PENDING_REQUEST

        _, first = _offline_request(service)
        _, second = _offline_request(service)  # supersedes the first
        cases = [
            (make_pool_certificate(vendor, other_server, request_nonce=second.nonce), ErrorCode.WRONG_INSTANCE),
            (
                make_pool_certificate(vendor, service.public_key, request_nonce=first.nonce),
                ErrorCode.REQUEST_SUPERSEDED,
            ),
            (make_pool_certificate(vendor, service.public_key, request_nonce="0" * 32), ErrorCode.REQUEST_SUPERSEDED),
            (make_pool_certificate(vendor, service.public_key, request_nonce=None), ErrorCode.REQUEST_SUPERSEDED),
            (
                make_pool_certificate(Ed25519PrivateKey.generate(), service.public_key, request_nonce=second.nonce),
                ErrorCode.INVALID_SIGNATURE,
            ),
            (
                make_pool_certificate(
                    vendor, service.public_key, request_nonce=second.nonce, expires_at=service.clock() - 1
                ),
                ErrorCode.EXPIRED,
            ),
            (b"garbage", ErrorCode.INVALID_CODE),
        ]
        for blob, code in cases:
            with pytest.raises(LicensingError) as err:
                service.install_certificate(blob, offline=True, vendor_public_key=pub)
            assert err.value.code == code
        assert not (tmp_path / "fls" / "vendor.pub").exists()  # nothing was pinned by a refused install
        assert service.status()["provisioned"] is False
        # no vendor key pinned nor given: nothing can be trusted
        with pytest.raises(LicensingError) as err:
            service.install_certificate(
                make_pool_certificate(vendor, service.public_key, request_nonce=second.nonce), offline=True
            )
        assert err.value.code == ErrorCode.NOT_PROVISIONED
        # the right one still installs
        service.install_certificate(
            make_pool_certificate(vendor, service.public_key, request_nonce=second.nonce),
            offline=True,
            vendor_public_key=pub,
        )
        assert service.status()["provisioned"] is True
    finally:
        service.close()


def test_offline_codes_with_the_cli(tmp_path, vendor, capsys):
    """floating request -> (vendor signs) -> floating install via the CLI; then serve and lease."""
    data = tmp_path / "fls"
    key_file = tmp_path / "license.txt"
    key_file.write_text(f"  {LICENSE_KEY.lower()}\n")
    assert cli("floating", "request", "--data", data, "--key-file", key_file, "--out", tmp_path / "req.txt") == 0
    code = capsys.readouterr().out
    assert code == (tmp_path / "req.txt").read_text()
    request = open_instance_request(unarmor(code, labels.FLOATING_REQUEST), labels.KIND_FLOATING_REQUEST)
    cert = make_pool_certificate(vendor, request.public_key, seats=2, request_nonce=request.nonce)
    (tmp_path / "cert.txt").write_text(armor(labels.FLOATING_CERTIFICATE, cert))
    (tmp_path / "vendor.pub").write_text(public_key_to_text(vendor) + "\n")
    # a code of the wrong kind is refused
    assert (
        cli(
            "floating",
            "install",
            "--data",
            data,
            "--certificate",
            tmp_path / "req.txt",
            "--vendor-key",
            tmp_path / "vendor.pub",
        )
        == 1
    )
    assert "wrong_document" in capsys.readouterr().err
    assert (
        cli(
            "floating",
            "install",
            "--data",
            data,
            "--certificate",
            tmp_path / "cert.txt",
            "--vendor-key",
            tmp_path / "vendor.pub",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 seat(s)" in out
    token = join_token(out)  # a new pool is closed: the join token is printed once
    # installing the same answer twice: the request is no longer pending
    assert cli("floating", "install", "--data", data, "--certificate", tmp_path / "cert.txt") == 1
    assert "no_pending_request" in capsys.readouterr().err

    fls = start_floating(data)  # vendor key comes from DIR/vendor.pub
    try:

        async def lease(token: str | None) -> None:
            async with FloatingClient(fls.url) as client:
                verify_lease(
                    await client.acquire(
                        lease_request(Ed25519PrivateKey.generate(), "lease_acquire"), join_token=token
                    ),
                    vendor.public_key(),
                )

        with pytest.raises(LicensingError) as refused:  # main: anyone took the seats of a new pool
            asyncio.run(lease(None))
        assert refused.value.code == ErrorCode.NOT_AUTHORIZED
        asyncio.run(lease(token))
    finally:
        fls.stop()


def test_status_cli(tmp_path, vendor, capsys):
    fls = start_floating(tmp_path / "fls", vendor_key=vendor, seats=3, features=("mqtt_server",))
    inst = Ed25519PrivateKey.generate()
    try:

        async def lease() -> None:
            async with FloatingClient(fls.url) as client:
                await client.acquire(lease_request(inst, "lease_acquire"))

        asyncio.run(lease())
        assert cli("floating", "status", "--data", fls.data_dir) == 0
        out = capsys.readouterr().out
        assert "1 used, 2 free, 3 total" in out
        assert fls.service.status()["leases"][0]["lease_id"] in out
        from mqtt_licensing.core.signing import fingerprint

        assert fingerprint(inst) in out and "lic_test" in out and "mqtt_server" in out
        assert "WARNING" in out and "--new-token" in out  # a pool provisioned open keeps working, and says so
        assert cli("floating", "status", "--data", fls.data_dir, "--json") == 0
        import json

        status = json.loads(capsys.readouterr().out)
        assert status["seats"] == {"total": 3, "used": 1, "free": 2}
        assert status["leases"][0]["instance_fingerprint"] == fingerprint(inst)
        assert status["open"] is True
    finally:
        fls.stop()
    assert cli("floating", "status", "--data", tmp_path / "nothing-here") == 2  # not a data folder: a setup mistake
    assert "not a floating server data folder" in capsys.readouterr().err


def test_offline_deactivation_stops_leasing(tmp_path, vendor, capsys):
    fls = start_floating(tmp_path / "fls", vendor_key=vendor, seats=3)
    inst = Ed25519PrivateKey.generate()

    async def acquire() -> None:
        async with FloatingClient(fls.url) as client:
            await client.acquire(lease_request(inst, "lease_acquire"))

    try:
        asyncio.run(acquire())
        assert cli("floating", "deactivate", "--data", fls.data_dir, "--out", tmp_path / "deact.txt") == 0
        code = capsys.readouterr().out
        request = open_instance_request(
            unarmor(code, labels.DEACTIVATION_CODE),
            labels.KIND_OFFLINE_DEACTIVATION,
        )
        assert request.activation_id == "act_test" and request.license_id == "lic_test"
        assert request.public_key == fls.public_key
        with pytest.raises(LicensingError) as err:  # the running server sees it at once
            asyncio.run(acquire())
        assert err.value.code == ErrorCode.NOT_PROVISIONED
        status = fls.service.status()
        assert status["leases"] == [] and status["deactivated_activation_id"] == "act_test"
        assert cli("floating", "deactivate", "--data", fls.data_dir) == 1
        assert "not_activated" in capsys.readouterr().err
    finally:
        fls.stop()
