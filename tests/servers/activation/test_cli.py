"""The `mqtt-licensing vendor ...` verbs, in-process (capsys) and once through the installed entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.cli.main import main
from mqtt_licensing.cli.vendor import parse_date
from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import unarmor
from mqtt_licensing.core.documents import ActivationCertificate, FloatingCertificate
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import normalize_key
from mqtt_licensing.core.signing import public_key_from_text, unb64
from mqtt_licensing.servers._run import free_port
from tests.helpers.activation import VendorHandle

from .conftest import Instance

KEY_LINE = re.compile(r"MQL1(-[0-9A-Z]{5}){6}\n")


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_issue_prints_only_the_key_and_terms_are_stored(tmp_path: Path, capsys: Any) -> None:
    data = str(tmp_path / "v")
    assert run(capsys, "vendor", "init", str(data))[0] == 0  # every other verb needs one
    code, out, err = run(
        capsys,
        "vendor",
        "issue",
        "--data",
        data,
        "--features",
        "mqtt_server,mqtt_server_support",
        "--activations",
        "3",
        "--expires",
        "2031-02-03",
        "--support-until",
        "2030-01-01",
        "--max-connections",
        "40",
    )
    assert code == 0 and KEY_LINE.fullmatch(out) and err == ""
    normalize_key(out)

    code, out, _ = run(capsys, "vendor", "licenses", "--data", data, "--json")
    (lic,) = json.loads(out)
    assert lic["features"] == ["mqtt_server", "mqtt_server_support"] and lic["max_activations"] == 3
    assert lic["expires_at"] == parse_date("2031-02-03") == 1927843200
    assert lic["support_until"] == 1893456000 and lic["max_connections"] == 40
    assert lic["key_mask"] in run(capsys, "vendor", "licenses", "--data", data)[1]

    code, out, _ = run(
        capsys,
        "vendor",
        "update",
        "--data",
        data,
        lic["id"],
        "--add-features",
        "iot_bridge_snowflake",
        "--remove-features",
        "mqtt_server_support",
        "--expires",
        "never",
        "--max-connections",
        "unlimited",
        "--activations",
        "5",
    )
    assert code == 0 and "iot_bridge_snowflake, mqtt_server" in out
    code, out, _ = run(capsys, "vendor", "show", "--data", data, lic["id"], "--json")
    shown = json.loads(out)
    assert shown["expires_at"] is None and shown["max_connections"] is None and shown["max_activations"] == 5
    assert shown["support_until"] == 1893456000

    for verb, status in (("suspend", "suspended"), ("reinstate", "active"), ("revoke", "revoked")):
        assert run(capsys, "vendor", verb, "--data", data, lic["id"])[0] == 0
        assert json.loads(run(capsys, "vendor", "show", "--data", data, lic["id"], "--json")[1])["status"] == status
    code, _, err = run(capsys, "vendor", "reinstate", "--data", data, lic["id"])
    assert code == 1 and err.startswith("error [bad_request]")


def test_cli_errors_have_codes(tmp_path: Path, capsys: Any) -> None:
    data = str(tmp_path / "v")
    assert run(capsys, "vendor", "init", str(data))[0] == 0  # every other verb needs one
    code, out, err = run(capsys, "vendor", "issue", "--data", data, "--features", "mqtt_server,teleport")
    assert code == 1 and out == "" and err.startswith("error [invalid_field]")
    code, _, err = run(capsys, "vendor", "issue", "--data", data, "--features", "mqtt_server", "--model", "floating")
    assert code == 1 and "seats" in err
    assert run(capsys, "vendor", "show", "--data", data, "lic_nope")[2].startswith("error [not_found]")
    assert run(capsys, "vendor", "free", "--data", data, "act_nope")[2].startswith("error [activation_not_found]")
    code, _, err = run(capsys, "vendor", "offline-activate", "--data", data, "--request", str(tmp_path / "missing"))
    assert code == 2 and "cannot read" in err  # a command-line mistake: exit 2
    with pytest.raises(SystemExit):
        main(["vendor", "issue", "--data", data, "--features", "mqtt_server", "--expires", "31/12/2030"])


def test_public_key_matches_the_pub_file(tmp_path: Path, capsys: Any) -> None:
    data = tmp_path / "v"
    assert run(capsys, "vendor", "init", str(data))[0] == 0  # every other verb needs one
    code, out, _ = run(capsys, "vendor", "public-key", "--data", str(data))
    assert code == 0 and out.strip() == (data / "vendor.pub").read_text().strip()
    public_key_from_text(out)


async def test_free_lost_activation_with_cli_while_server_runs(vendor: VendorHandle, capsys: Any) -> None:
    key = vendor.issue(max_activations=1)
    lost = Instance()
    async with ActivationClient(vendor.url) as client:
        activation_id = (await client.activate(key, lost.activate(key)))["activation_id"]
        data = str(vendor.data_dir)
        code, out, _ = run(capsys, "vendor", "activations", "--data", data)
        assert code == 0 and activation_id in out and lost.fingerprint in out
        code, out, _ = run(capsys, "vendor", "free", "--data", data, activation_id)
        assert code == 0 and "freed" in out
        assert activation_id not in run(capsys, "vendor", "activations", "--data", data)[1]
        assert "freed_by_vendor" in run(capsys, "vendor", "activations", "--data", data, "--all")[1]
        with pytest.raises(LicensingError) as info:
            await client.check_in(lost.check_in(activation_id))
        assert info.value.code == ErrorCode.ACTIVATION_NOT_FOUND
        await client.activate(key, Instance().activate(key))
    assert "1 of 1 in use" in run(capsys, "vendor", "show", "--data", data, vendor.license_id(key))[1]


def test_offline_round_trip_with_files(tmp_path: Path, capsys: Any) -> None:
    data = str(tmp_path / "v")
    assert run(capsys, "vendor", "init", str(data))[0] == 0  # every other verb needs one
    key = run(capsys, "vendor", "issue", "--data", data, "--features", "mqtt_server", "--model", "offline")[1]
    inst = Instance()
    request_file = tmp_path / "request.txt"
    request_file.write_text(inst.offline_request_code(key.strip()))
    out_file = tmp_path / "usage-license.txt"
    code, out, err = run(
        capsys, "vendor", "offline-activate", "--data", data, "--request", str(request_file), "--out", str(out_file)
    )
    assert code == 0 and out.startswith(f"-----BEGIN {labels.USAGE_LICENSE}-----")
    assert out_file.read_text() == out and "created" in err
    pub = public_key_from_text((tmp_path / "v" / "vendor.pub").read_text())
    cert = ActivationCertificate.open(unarmor(out, labels.USAGE_LICENSE), pub)
    assert cert.model == "offline" and cert.instance_fingerprint == inst.fingerprint

    again = run(capsys, "vendor", "offline-activate", "--data", data, "--request", str(request_file))
    assert again[0] == 0 and "updated" in again[2]

    code_file = tmp_path / "deactivation.txt"
    code_file.write_text(inst.deactivation_code(cert.activation_id, cert.license_id))
    code, out, _ = run(capsys, "vendor", "offline-deactivate", "--data", data, "--code", str(code_file))
    assert code == 0 and "freed" in out and "already" not in out
    code, out, _ = run(capsys, "vendor", "offline-deactivate", "--data", data, "--code", str(code_file))
    assert code == 0 and "already free" in out
    code_file.write_text(Instance().deactivation_code(cert.activation_id, cert.license_id))
    code, _, err = run(capsys, "vendor", "offline-deactivate", "--data", data, "--code", str(code_file))
    assert code == 1 and err.startswith("error [invalid_signature]")


def test_floating_issue_with_files(tmp_path: Path, capsys: Any) -> None:
    data = str(tmp_path / "v")
    assert run(capsys, "vendor", "init", str(data))[0] == 0  # every other verb needs one
    key = run(
        capsys, "vendor", "issue", "--data", data, "--features", "mqtt_server", "--model", "floating", "--seats", "4"
    )[1].strip()
    server = Instance()
    request_file = tmp_path / "floating-request.txt"
    request_file.write_text(server.floating_request_code(key))
    out_file = tmp_path / "floating-cert.txt"
    code, out, _ = run(
        capsys, "vendor", "floating-issue", "--data", data, "--request", str(request_file), "--out", str(out_file)
    )
    assert code == 0
    pub = public_key_from_text(run(capsys, "vendor", "public-key", "--data", data)[1])
    cert = FloatingCertificate.open(unarmor(out_file.read_text(), labels.FLOATING_CERTIFICATE), pub)
    assert cert.seats == 4 and cert.server_fingerprint == server.fingerprint


def test_entry_point_issue_prints_only_the_key(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "mqtt-licensing"
    subprocess.run([str(exe), "vendor", "init", str(tmp_path / "v")], capture_output=True, timeout=30, check=True)
    result = subprocess.run(
        [str(exe), "vendor", "issue", "--data", str(tmp_path / "v"), "--features", "mqtt_server"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert KEY_LINE.fullmatch(result.stdout)


def test_serve_prints_where_things_are_and_serves(tmp_path: Path) -> None:
    data, port = tmp_path / "v", free_port()
    exe = Path(sys.executable).parent / "mqtt-licensing"
    subprocess.run([str(exe), "vendor", "init", str(data)], capture_output=True, timeout=30, check=True)
    proc = subprocess.Popen(
        [str(exe), "vendor", "serve", "--data", str(data), "--port", str(port), "--certificate-lifetime", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        assert f"http://127.0.0.1:{port}" in banner[0]
        assert str(data / "vendor.pub") in banner[1] and str(data / "admin.token") in banner[2]
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                health = httpx.get(f"{url}/v1/health", timeout=1, trust_env=False).json()
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("vendor serve did not answer")
        assert health["public_key"] == (data / "vendor.pub").read_text().strip()
        token = (data / "admin.token").read_text().strip()
        created = httpx.post(
            f"{url}/v1/admin/licenses",
            json={"features": ["mqtt_server"]},
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=5,
        ).json()
        inst = Instance()
        activated = httpx.post(
            f"{url}/v1/activations", json=inst.activation_body(created["key"]), trust_env=False, timeout=5
        ).json()
        cert = ActivationCertificate.open(unb64(activated["certificate"]), public_key_from_text(health["public_key"]))
        assert cert.valid_until is not None and cert.valid_until - cert.issued_at == 120
    finally:
        proc.terminate()
        proc.wait(timeout=10)
