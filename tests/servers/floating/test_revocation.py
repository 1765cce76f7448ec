"""A floating pool the vendor no longer vouches for (issue 20 rows 3 and 4).

Main: floating certificates were signed valid until the license's own expiry (never, for a
perpetual one); after `vendor revoke` the floating server logged "refresh failed: revoked" and
kept leasing. A copied floating data folder gave 2 + 2 leases of a 2-seat pool and the vendor
saw one activation with clone_count 0: floating check-ins carried no chain."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.activation import VendorHandle, start_vendor
from tests.helpers.floating import start_floating

pytestmark = pytest.mark.timeout(60)


def _cli(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


def activated(tmp_path: Path, vendor: VendorHandle, data: Path) -> tuple[dict[str, Any], Path]:
    """A 2-seat perpetual floating license, activated online in ``data``."""
    lic, key = vendor.issue_license(features=["mqtt_server"], model="floating", seats=2)
    key_file = tmp_path / "key.txt"
    key_file.write_text(key + "\n")
    vendor_pub = vendor.data_dir / "vendor.pub"
    args = ("floating", "activate", "--data", data, "--key-file", key_file, "--vendor", vendor.url)
    assert _cli(*args, "--vendor-key", vendor_pub) == 0
    service = FloatingService.open(data)
    try:
        service.allow("network", "127.0.0.0/8")  # the pool is closed: the test's brokers are admitted by network
    finally:
        service.close()
    return lic, key_file


async def lease(url: str, key: Ed25519PrivateKey, kind: str = "lease_acquire") -> str:
    async with FloatingClient(url) as client:
        try:
            request = lease_request(key, kind, features=("mqtt_server",))
            await (client.acquire(request) if kind == "lease_acquire" else client.renew(request))
        except LicensingError as exc:
            return str(exc.code)
    return "ok"


def valid_until(data: Path) -> int | None:
    service = FloatingService.open(data)
    try:
        return service.status()["pool"]["valid_until"]
    finally:
        service.close()


def test_a_revoked_floating_license_stops_the_pool_at_its_next_refresh(tmp_path, capsys):
    with start_vendor(tmp_path / "vendor") as vendor:
        lic, _ = activated(tmp_path, vendor, tmp_path / "fls")
        limit = valid_until(tmp_path / "fls")
        assert limit is not None and limit <= time.time() + 7 * 86400 + 60  # a lifetime, not "never"
        fls = start_floating(tmp_path / "fls", ttl=60)
        try:
            holder = Ed25519PrivateKey.generate()
            assert asyncio.run(lease(fls.url, holder)) == "ok"
            vendor.service.set_status(lic["id"], "revoked")
            capsys.readouterr()
            assert _cli("floating", "refresh", "--data", tmp_path / "fls") == 1
            assert "revoked" in capsys.readouterr().err
            assert asyncio.run(lease(fls.url, Ed25519PrivateKey.generate())) == "not_provisioned"  # a new broker
            assert asyncio.run(lease(fls.url, holder, "lease_renew")) == "not_provisioned"  # and the renewal
        finally:
            fls.stop()


def test_a_copied_floating_data_folder_is_seen_by_the_vendor(tmp_path, capsys):
    with start_vendor(tmp_path / "vendor") as vendor:
        lic, _ = activated(tmp_path, vendor, tmp_path / "a")
        shutil.copytree(tmp_path / "a", tmp_path / "b")  # floating.key, the database, vendor.pub
        for data in ("a", "b", "a"):
            assert _cli("floating", "refresh", "--data", tmp_path / data) == 0
        [act] = vendor.service.list_activations(lic["id"])
        assert act["clone_count"] >= 1 and act["cloned_at"] is not None
        vendor.service.update_license(lic["id"], {"clone_policy": "suspend"})
        capsys.readouterr()
        assert _cli("floating", "refresh", "--data", tmp_path / "b") == 1
        assert "cloned" in capsys.readouterr().err
        fls = start_floating(tmp_path / "b", ttl=60)
        try:
            assert asyncio.run(lease(fls.url, Ed25519PrivateKey.generate())) == "not_provisioned"
        finally:
            fls.stop()
