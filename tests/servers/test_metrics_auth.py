"""`/metrics` carries license state, limits and sales counts: the broker's http_bind asks for its
metrics_token or an admin's or reader's login, both servers for their metrics.token; `/healthz`
says only whether the service runs."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from mqtt_licensing.servers._run import free_port
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, READER, READER_PASSWORD, start_broker
from tests.reliability.support import CLI, wait_port

pytestmark = pytest.mark.timeout(60)
TOKEN = "prometheus-scrapes-with-this"


def test_broker_metrics_need_the_token_or_a_readers_login(tmp_path, vendor):
    http_port = free_port()
    with start_broker(tmp_path / "state", vendor=vendor, http_bind=f"127.0.0.1:{http_port}", metrics_token=TOKEN):
        url = f"http://127.0.0.1:{http_port}"
        anonymous = httpx.get(f"{url}/metrics", timeout=5)
        assert anonymous.status_code == 401 and "mqtt_license_state" not in anonymous.text
        assert "Bearer" in anonymous.headers["www-authenticate"]
        wrong = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        assert httpx.get(f"{url}/metrics", auth=(READER, "wrong"), timeout=5).status_code == 401
        for auth in ({"headers": {"Authorization": f"Bearer {TOKEN}"}}, {"auth": (READER, READER_PASSWORD)},
                     {"auth": (ADMIN, ADMIN_PASSWORD)}):  # fmt: skip
            scraped = httpx.get(f"{url}/metrics", timeout=5, **auth)
            assert scraped.status_code == 200 and 'mqtt_license_state{state="trial"} 1.0' in scraped.text
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"ok": True}


@pytest.mark.parametrize("server", ["vendor", "floating"])
def test_server_metrics_need_the_data_folders_token(tmp_path, server):
    port, data = free_port(), tmp_path / "data"
    if server == "vendor":
        assert subprocess.run([CLI, "vendor", "init", str(data)], capture_output=True, timeout=30).returncode == 0
    log = open(tmp_path / "log", "wb")  # noqa: SIM115 - the child's
    proc = subprocess.Popen([CLI, server, "serve", "--data", str(data), "--port", str(port)], stdout=log, stderr=log)
    try:
        wait_port(port, 20, proc)
        url = f"http://127.0.0.1:{port}/metrics"
        refused = httpx.get(url, timeout=5)
        assert refused.status_code == 401 and "mqtt_license_server" not in refused.text
        token = (data / "metrics.token").read_text().strip()
        assert (data / "metrics.token").stat().st_mode & 0o077 == 0
        scraped = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert scraped.status_code == 200 and "mqtt_license_server_requests_total" in scraped.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert "metrics.token" in (tmp_path / "log").read_text()
