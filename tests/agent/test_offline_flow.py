"""Offline (air-gapped) activation by exchanged codes, end to end (issue 3).

The broker never reaches the vendor: no vendor server runs at all while the
broker is up (vendor_url points at a closed port), which proves an offline
licensed agent makes no network call. The vendor side is its CLI on the vendor's
data folder, and codes travel as files, as a person would move them.
"""

import time

import pytest

from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.servers._run import free_port
from mqtt_licensing.servers.activation import ActivationService
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, start_broker
from tests.helpers.cli import run_cli
from tests.helpers.fakeclock import FakeClock


def cli(*args, check=True):
    """The operator's and the vendor's CLI, in-process: what crosses is the files, not a process."""
    return run_cli(*args, check=check)


@pytest.fixture
def vendor_dir(tmp_path):
    """A vendor data folder with no server running: only the vendor CLI touches it."""
    path = tmp_path / "vendor"
    ActivationService.open(path).close()  # creates the signing key, as `vendor serve` would
    return path


def issue(vendor_dir, *args):
    return cli("vendor", "issue", "--data", vendor_dir, *args).stdout.strip()


@pytest.fixture
def air_gapped_broker(tmp_path, vendor_dir):
    pub = (vendor_dir / "vendor.pub").read_text().strip()
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    with start_broker(
        tmp_path / "state",
        vendor_url=dead_url,
        vendor_public_key=pub,
        trial_seconds=0,
        check_in_interval=0.2,
        retry_interval=0.2,
    ) as broker:
        yield broker


def operator(broker, *args, check=True):
    return cli(*args, "--port", broker.port, "--username", ADMIN, "--password", ADMIN_PASSWORD, check=check)


def offline_request(broker, tmp_path, key, name="request.txt"):
    key_file = tmp_path / "license.txt"
    key_file.write_text(key + "\n")
    out = tmp_path / name
    operator(broker, "offline-request", "--key-file", key_file, "--out", out)
    return out


def vendor_answer(vendor_dir, request_file, tmp_path, name="usage-license.txt"):
    out = tmp_path / name
    cli("vendor", "offline-activate", "--data", vendor_dir, "--request", request_file, "--out", out)
    return out


def test_round_trip_by_files(tmp_path, vendor_dir, air_gapped_broker):
    broker = air_gapped_broker
    key = issue(
        vendor_dir,
        "--model",
        "offline",
        "--features",
        "mqtt_server,mqtt_server_support",
        "--support-until",
        "2031-06-30",
    )
    request = offline_request(broker, tmp_path, key)
    text = request.read_text()
    assert "BEGIN MQTT LICENSING USAGE REQUEST" in text and key not in text
    assert all(len(line) <= 64 for line in text.splitlines())
    status = broker.status()
    assert status["state"] == "pending_offline" and status["offline"]["pending_request_at"]

    usage = vendor_answer(vendor_dir, request, tmp_path)
    operator(broker, "activate", "--usage-license-file", usage)
    status = broker.status()
    assert status["state"] == "active" and status["model"] == "offline"
    assert status["features"] == ["mqtt_server", "mqtt_server_support"]
    assert status["support_until"].startswith("2031-06-30")
    assert status["check_in"] is None
    with MqttClient(broker.port, client_id="plant") as c:
        assert c.connect() == 0
    # Five check-in intervals pass, a step each: an online license would have called the vendor
    # (the dead URL: a failure, grace) on every one of them.
    clock = FakeClock()
    broker.agent.clock = clock
    for _ in range(5):
        clock.advance(0.25)
        broker.call(broker.agent.tick())
    assert broker.agent.evaluation.state == "active"
    assert broker.status()["check_in"] is None

    # reactivate is refused for offline licenses
    with broker.admin() as c, pytest.raises(LicensingError) as err:
        c.request("reactivate")
    assert err.value.code == "offline_license_cannot_reactivate"

    # restart: still active, still no network
    broker.restart()
    assert broker.status()["state"] == "active"

    # deactivation gives a code, kept retrievable in status
    result = operator(broker, "deactivate", "--json")
    import json

    code = json.loads(result.stdout)["deactivation_code"]
    assert "BEGIN MQTT LICENSING DEACTIVATION CODE" in code
    status = broker.status()
    assert status["serving"] is False and status["offline"]["deactivation_code"] == code
    code_file = tmp_path / "deactivation.txt"
    code_file.write_text(code)
    first = cli("vendor", "offline-deactivate", "--data", vendor_dir, "--code", code_file)
    assert "free" in first.stdout.lower()
    replay = cli("vendor", "offline-deactivate", "--data", vendor_dir, "--code", code_file)
    assert "already" in replay.stdout.lower()


def test_new_request_supersedes_the_old_one(tmp_path, vendor_dir, air_gapped_broker):
    broker = air_gapped_broker
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server", "--activations", "1")
    old_request = offline_request(broker, tmp_path, key, "old.txt")
    old_usage = vendor_answer(vendor_dir, old_request, tmp_path, "old-usage.txt")
    new_request = offline_request(broker, tmp_path, key, "new.txt")
    refused = operator(broker, "activate", "--usage-license-file", old_usage, check=False)
    assert refused.returncode != 0 and "request_superseded" in refused.stderr
    new_usage = vendor_answer(vendor_dir, new_request, tmp_path, "new-usage.txt")
    operator(broker, "activate", "--usage-license-file", new_usage)
    assert broker.status()["state"] == "active"


def test_usage_license_for_another_instance_is_refused(tmp_path, vendor_dir, air_gapped_broker):
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server", "--activations", "2")
    pub = (vendor_dir / "vendor.pub").read_text().strip()
    with start_broker(tmp_path / "other", vendor_url=None, vendor_public_key=pub) as other:
        request = offline_request(other, tmp_path, key, "other.txt")
    usage = vendor_answer(vendor_dir, request, tmp_path)
    # copied to a second broker with its own identity (which has a pending request of its own)
    offline_request(air_gapped_broker, tmp_path, key, "mine.txt")
    refused = operator(air_gapped_broker, "activate", "--usage-license-file", usage, check=False)
    assert refused.returncode != 0 and "wrong_instance" in refused.stderr


def test_tampered_codes(tmp_path, vendor_dir, air_gapped_broker):
    broker = air_gapped_broker
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server")
    request = offline_request(broker, tmp_path, key)
    usage = vendor_answer(vendor_dir, request, tmp_path).read_text()
    lines = usage.splitlines()

    # one flipped character: a clear checksum error
    body = lines[1]
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    typo = "\n".join([lines[0], flipped, *lines[2:]])
    with broker.admin() as c, pytest.raises(LicensingError) as err:
        c.request("activate", {"method": "offline", "usage_license": typo})
    assert err.value.code == "invalid_code" and "checksum" in err.value.message

    # a valid checksum around a bad signature: a signature error
    from mqtt_licensing.core.codes import armor, unarmor
    from mqtt_licensing.core.labels import USAGE_LICENSE

    blob = bytearray(unarmor(usage, USAGE_LICENSE))
    blob[-3] ^= 0x01  # inside the signature
    forged = armor(USAGE_LICENSE, bytes(blob))
    with broker.admin() as c, pytest.raises(LicensingError) as err:
        c.request("activate", {"method": "offline", "usage_license": forged})
    assert err.value.code == "invalid_signature"

    # tampered request code at the vendor: checksum error, nothing recorded
    req_lines = request.read_text().splitlines()
    req_lines[2] = req_lines[2][:5] + ("Z" if req_lines[2][5] != "Z" else "Y") + req_lines[2][6:]
    bad_request = tmp_path / "bad-request.txt"
    bad_request.write_text("\n".join(req_lines))
    result = cli("vendor", "offline-activate", "--data", vendor_dir, "--request", bad_request, check=False)
    assert result.returncode != 0 and "invalid_code" in result.stderr


def test_update_of_an_active_offline_license_uses_the_same_activation(tmp_path, vendor_dir, air_gapped_broker):
    broker = air_gapped_broker
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server", "--activations", "1")
    operator(
        broker,
        "activate",
        "--usage-license-file",
        vendor_answer(vendor_dir, offline_request(broker, tmp_path, key, "r1.txt"), tmp_path, "u1.txt"),
    )
    first = broker.status()
    # the vendor adds a feature; the operator asks again from the active instance
    license_id = first["license_id"]
    cli("vendor", "update", "--data", vendor_dir, license_id, "--add-features", "iot_bridge_snowflake")
    request = offline_request(broker, tmp_path, key, "r2.txt")
    assert broker.status()["state"] == "active"  # keeps serving meanwhile
    with MqttClient(broker.port, client_id="still-serving") as c:
        assert c.connect() == 0
    operator(broker, "activate", "--usage-license-file", vendor_answer(vendor_dir, request, tmp_path, "u2.txt"))
    second = broker.status()
    assert second["activation_id"] == first["activation_id"]  # no second activation used
    assert "iot_bridge_snowflake" in second["features"]


def test_online_license_cannot_be_activated_offline(tmp_path, vendor_dir, air_gapped_broker):
    key = issue(vendor_dir, "--features", "mqtt_server")  # an online license
    request = offline_request(air_gapped_broker, tmp_path, key)
    result = cli("vendor", "offline-activate", "--data", vendor_dir, "--request", request, check=False)
    assert result.returncode != 0 and "wrong_model" in result.stderr


def test_forged_deactivation_code_is_refused(tmp_path, vendor_dir, air_gapped_broker):
    broker = air_gapped_broker
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server")
    operator(
        broker,
        "activate",
        "--usage-license-file",
        vendor_answer(vendor_dir, offline_request(broker, tmp_path, key), tmp_path),
    )
    activation_id, license_id = broker.status()["activation_id"], broker.status()["license_id"]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mqtt_licensing.core.codes import armor
    from mqtt_licensing.core.documents import sign_instance_request
    from mqtt_licensing.core.labels import DEACTIVATION_CODE, KIND_OFFLINE_DEACTIVATION

    forged = armor(
        DEACTIVATION_CODE,
        sign_instance_request(
            Ed25519PrivateKey.generate(),
            kind=KIND_OFFLINE_DEACTIVATION,
            nonce="n",
            created_at=int(time.time()),
            activation_id=activation_id,
            license_id=license_id,
        ),
    )
    code_file = tmp_path / "forged.txt"
    code_file.write_text(forged)
    result = cli("vendor", "offline-deactivate", "--data", vendor_dir, "--code", code_file, check=False)
    assert result.returncode != 0 and "invalid_signature" in result.stderr
    assert broker.status()["state"] == "active"


def test_restart_while_pending_keeps_the_request(tmp_path, vendor_dir, air_gapped_broker):
    broker = air_gapped_broker
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server")
    request = offline_request(broker, tmp_path, key)
    broker.restart()
    status = broker.status()
    assert status["state"] == "pending_offline"
    assert status["offline"]["request_code"].strip() == request.read_text().strip()
    operator(broker, "activate", "--usage-license-file", vendor_answer(vendor_dir, request, tmp_path))
    assert broker.status()["state"] == "active"
