"""The operator verbs over MQTT/TLS (broker_config/tls.yaml as shipped, with a test CA): mosquitto's
``--cafile``, ``--cert``, ``--insecure``, and ``$MQTT_LICENSING_CAFILE``; a CA that does not
sign the broker's certificate is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mqtt_licensing.core.errors import LicensingError
from tests.helpers.tls import LocalCA, make_ca
from tests.servers.test_mqtt_tls import ca, tls_broker  # noqa: F401  (the shipped tls.yaml, on a test CA)

pytestmark = pytest.mark.timeout(60)
CLI = [sys.executable, "-m", "mqtt_licensing.cli.main"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MQTT_LICENSING_")}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=50, env={**environment, **(env or {})})


def test_status_over_tls_with_cafile_or_its_environment(tls_broker: int, ca: LocalCA, tmp_path: Path) -> None:  # noqa: F811
    login = ["-p", str(tls_broker), "-u", "admin", "-P", "change-me", "-W", "10"]
    done = _cli("status", *login, "--cafile", str(ca.cert_file))
    assert done.returncode == 0 and "trial" in done.stdout, done.stderr
    done = _cli("events", *login, "--since", "1h", "--help")  # the flags are on every verb
    assert "--cafile" in done.stdout and "--cert-key" in done.stdout
    done = _cli("status", *login, "--json", env={"MQTT_LICENSING_CAFILE": str(ca.cert_file)})
    assert done.returncode == 0 and '"state": "trial"' in done.stdout, done.stderr

    other = make_ca(tmp_path / "other", name="someone else")
    done = _cli("status", *login, "--cafile", str(other.cert_file))
    assert done.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = _cli("status", *login, "--cafile", str(tmp_path / "missing.pem"))
    assert done.returncode == 1 and "invalid_field" in done.stderr and "missing.pem" in done.stderr


def test_client_certificate_and_insecure_options(ca: LocalCA, tmp_path: Path) -> None:  # noqa: F811
    from mqtt_licensing.clients.mqtt import ClientTls

    cert, key = ca.server_cert(tmp_path / "client", hosts=("ops",))
    context = ClientTls(cafile=str(ca.cert_file), certfile=str(cert), keyfile=str(key), insecure=True).context()
    assert context.check_hostname is False
    assert ClientTls(cafile=str(ca.cert_file)).context().check_hostname is True
    with pytest.raises(LicensingError) as bad:
        ClientTls(certfile=str(cert), keyfile=str(ca.cert_file)).context()
    assert bad.value.code == "invalid_field"
    done = _cli("status", "--cert-key", str(key))
    assert done.returncode == 2 and "--cert-key goes with --cert" in done.stderr
