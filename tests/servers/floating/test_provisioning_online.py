"""Provisioning a floating server against the real vendor server: online activation, refresh
of terms and deactivation; offline codes signed with the vendor's CLI. Offline by codes alone,
and what install refuses: test_provisioning.py."""

from __future__ import annotations

import asyncio
import socket

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core import instance_label
from mqtt_licensing.core.documents import verify_lease
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.keys import format_key
from mqtt_licensing.core.signing import public_key_to_text
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.activation import start_vendor
from tests.helpers.floating import start_floating
from tests.servers.floating.conftest import cli, join_token

pytestmark = pytest.mark.timeout(60)

LICENSE_KEY = format_key(bytes(range(15)))


def test_online_activation_refresh_and_deactivation(tmp_path, capsys):
    with start_vendor(tmp_path / "vendor") as vendor_server:
        license_record, key = vendor_server.issue_license(
            features=["mqtt_server"], model="floating", seats=2, max_activations=1
        )
        key_file = tmp_path / "key.txt"
        key_file.write_text(key + "\n")
        data = tmp_path / "fls"
        vendor_pub = tmp_path / "vendor" / "vendor.pub"
        # a wrong pinned vendor key: the vendor's answer is not trusted, nothing installed
        wrong = public_key_to_text(Ed25519PrivateKey.generate())
        assert (
            cli(
                "floating",
                "activate",
                "--data",
                data,
                "--key-file",
                key_file,
                "--vendor",
                vendor_server.url,
                f"--vendor-key={wrong}",  # "=": a base64url key may begin with "-"
            )
            == 1
        )
        assert "invalid_signature" in capsys.readouterr().err
        assert (
            cli(
                "floating",
                "activate",
                "--data",
                data,
                "--key-file",
                key_file,
                "--vendor",
                vendor_server.url,
                "--vendor-key",
                vendor_pub,
            )
            == 0
        )
        out = capsys.readouterr().out
        assert "2 seat(s)" in out
        token = join_token(out)
        # The vendor lists the floating server by its host name (a label, as a broker's).
        (act,) = vendor_server.service.list_activations(license_record["id"])
        assert act["label"] == instance_label.clean(socket.gethostname())

        fls = start_floating(data, ttl=60)
        keys = [Ed25519PrivateKey.generate() for _ in range(4)]
        try:

            async def acquire_all() -> list[str]:
                out = []
                async with FloatingClient(fls.url) as client:
                    for k in keys:
                        try:
                            request = lease_request(k, "lease_acquire", features=("mqtt_server",))
                            blob = await client.acquire(request, join_token=token)
                            verify_lease(blob, vendor_server.public_key)
                            out.append("ok")
                        except LicensingError as exc:
                            out.append(str(exc.code))
                return out

            assert asyncio.run(acquire_all()) == ["ok", "ok", "no_seats", "no_seats"]

            # the vendor adds seats and a feature; refresh pulls them while the server runs
            vendor_server.service.update_license(
                license_record["id"], {"seats": 3, "add_features": ["iot_bridge_snowflake"]}
            )
            assert cli("floating", "refresh", "--data", data) == 0
            assert "3 seat(s)" in capsys.readouterr().out
            assert asyncio.run(acquire_all()) == ["ok", "ok", "ok", "no_seats"]
            status = fls.service.status()
            assert "iot_bridge_snowflake" in status["pool"]["features"]
            assert status["vendor_url"] == vendor_server.url

            # the one activation is in use: a second floating server cannot activate
            assert (
                cli(
                    "floating",
                    "activate",
                    "--data",
                    tmp_path / "fls2",
                    "--key-file",
                    key_file,
                    "--vendor",
                    vendor_server.url,
                    "--vendor-key",
                    vendor_pub,
                )
                == 1
            )
            assert "no_activations_left" in capsys.readouterr().err

            # deactivate online: the vendor frees the activation, the pool stops leasing
            assert cli("floating", "deactivate", "--data", data, "--vendor", vendor_server.url) == 0
            capsys.readouterr()
            assert asyncio.run(acquire_all()) == ["not_provisioned"] * 4
            assert vendor_server.service.list_activations() == []
            assert (
                cli(
                    "floating",
                    "activate",
                    "--data",
                    tmp_path / "fls2",
                    "--key-file",
                    key_file,
                    "--vendor",
                    vendor_server.url,
                    "--vendor-key",
                    vendor_pub,
                )
                == 0
            )
        finally:
            fls.stop()


def test_offline_codes_with_the_vendor_cli(tmp_path, capsys):
    """floating request -> vendor floating-issue -> floating install, then offline deactivation
    freed by vendor offline-deactivate: all through the CLI."""
    with start_vendor(tmp_path / "vendor") as vendor_server:
        _, key = vendor_server.issue_license(features=["mqtt_server"], model="floating", seats=1)
        vendor_server.stop()  # the vendor CLI works on its data folder
        vdata, data = tmp_path / "vendor", tmp_path / "fls"
        key_file = tmp_path / "key.txt"
        key_file.write_text(key)
        assert cli("floating", "request", "--data", data, "--key-file", key_file, "--out", tmp_path / "req.txt") == 0
        assert (
            cli(
                "vendor",
                "floating-issue",
                "--data",
                vdata,
                "--request",
                tmp_path / "req.txt",
                "--out",
                tmp_path / "cert.txt",
            )
            == 0
        )
        assert (
            cli(
                "floating",
                "install",
                "--data",
                data,
                "--certificate",
                tmp_path / "cert.txt",
                "--vendor-key",
                vdata / "vendor.pub",
            )
            == 0
        )
        capsys.readouterr()
        service = FloatingService.open(data)
        try:
            assert service.status()["pool"]["seats"] == 1
        finally:
            service.close()
        assert cli("floating", "deactivate", "--data", data, "--out", tmp_path / "deact.txt") == 0
        assert cli("vendor", "offline-deactivate", "--data", vdata, "--code", tmp_path / "deact.txt") == 0
        assert "freed" in capsys.readouterr().out
