"""`vendor serve` and `floating serve` over HTTPS (--tls-cert/--tls-key) as real processes; a
certificate without its key, or one that does not load, is one line naming the fix."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.tls import make_ca

from .replicas import ROOT, Replica

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("server", ["vendor", "floating"])
def test_serve_https(tmp_path: Path, server: str) -> None:
    ca = make_ca(tmp_path / "ca")
    cert, key = ca.server_cert(tmp_path / "tls")
    replica = Replica(
        server, tmp_path / "data", None, "--tls-cert", str(cert), "--tls-key", str(key), verify=str(ca.cert_file)
    )
    try:
        assert replica.url.startswith("https://")
        assert (
            httpx.get(
                f"{replica.url}/v1/noop", verify=ssl.create_default_context(cafile=ca.cert_file), trust_env=False
            ).status_code
            == 200
        )
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{replica.url}/v1/noop", trust_env=False)  # the system roots do not know this CA
    finally:
        replica.stop()


@pytest.mark.parametrize("server", ["vendor", "floating"])
def test_serve_with_a_bad_tls_setup_is_one_line(tmp_path: Path, server: str) -> None:
    ca = make_ca(tmp_path / "ca")
    cert, _key = ca.server_cert(tmp_path / "tls")
    for extra, words in (
        (["--tls-cert", str(cert)], "needs both --tls-cert and --tls-key"),
        (["--tls-cert", str(cert), "--tls-key", str(ca.cert_file)], "cannot load the TLS certificate"),
    ):
        argv = [sys.executable, "-m", "mqtt_licensing.cli.main", server, "serve", "--data", str(tmp_path / "d")]
        done = subprocess.run([*argv, *extra], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 1, done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr, done.stderr
