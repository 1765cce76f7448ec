"""The demo serves the License page it tells store buyers to use, and deleting demo-data
starts its trial over (as the README says).

Main: the demo broker had no `ws` listener and no `http_bind`, and its trial marker was the
host's, so a fresh demo-data found its trial already running (or used up)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.servers._run import free_port
from tests.helpers.browser import browser, page, screenshot_dir  # noqa: F401

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.timeout(150)


class Demo:
    def __init__(self, cwd: Path) -> None:
        self.ports = {name: free_port() for name in ("port", "vendor-port", "http-port", "ws-port")}
        args = [str(BIN / "mqtt-licensing"), "demo", "--dir", "demo-data"]
        for name, value in self.ports.items():
            args += [f"--{name}", str(value)]
        self.proc = subprocess.Popen(
            args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ)
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.stdout is not None:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line.startswith("  mosquitto_pub"):
                return
        raise AssertionError("\n".join(self.lines) or "the demo printed nothing")

    def printed(self, label: str) -> str:
        line = next(ln for ln in self.lines if ln.strip().startswith(label))
        return line.split(":", 1)[1].split()[0]

    def status(self) -> dict[str, Any]:
        with LicenseClient("127.0.0.1", self.ports["port"], username="admin", password="demo-admin") as c:
            return c.request("status")["status"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)


def test_the_demo_serves_the_license_page_and_its_own_trial(tmp_path, page):  # noqa: F811
    demo = Demo(tmp_path)
    try:
        url = demo.printed("License page")
        assert url == f"http://127.0.0.1:{demo.ports['http-port']}/"
        config = httpx.get(url + "page-config.json", timeout=10).json()
        assert config["ws_port"] == demo.ports["ws-port"]
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        page.fill("#username", "admin")
        page.fill("#password", "demo-admin")
        page.click("#login-button")
        page.wait_for_selector("#state-badge[data-state=trial]")
        first = demo.status()["trial"]["started_at"]
    finally:
        demo.stop()
    assert (tmp_path / "demo-data" / "trial.json").exists()  # the demo's own marker
    shutil.rmtree(tmp_path / "demo-data")
    time.sleep(1.1)  # started_at has whole seconds: a new trial must be able to differ
    demo = Demo(tmp_path)
    try:
        again = demo.status()
        assert again["state"] == "trial" and again["trial"]["started_at"] > first  # main: the host's trial went on
    finally:
        demo.stop()
