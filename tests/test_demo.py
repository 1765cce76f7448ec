"""The demo, driven exactly as its printed instructions say (what README's first command shows)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mqtt_licensing.servers._run import free_port

BIN = Path(sys.executable).parent


def run_line(line, cwd, env):
    result = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.timeout(120)
def test_demo_instructions_work(tmp_path):
    port, vendor_port = free_port(), free_port()
    # The printed lines run as in a new terminal: no venv on PATH until they `source` it.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": path}
    demo = subprocess.Popen(
        [
            str(BIN / "mqtt-licensing"),
            "demo",
            "--dir",
            "demo-data",
            "--port",
            str(port),
            "--vendor-port",
            str(vendor_port),
            "--http-port",  # the License page and its WebSocket listener: free ports too
            str(free_port()),
            "--ws-port",
            str(free_port()),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert demo.stdout is not None
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            lines.append(line.rstrip("\n"))
            if line.startswith("  mosquitto_pub"):
                break
        text = "\n".join(lines)
        assert "demo is running" in text, text
        setup = [ln.strip() for ln in lines if ln.startswith(("  source", "  export"))]
        assert setup[0].startswith("source "), "a new terminal needs the venv first"
        cli = [ln.strip() for ln in lines if ln.startswith("  mqtt-licensing")]
        outputs = [run_line("; ".join([*setup, c]), tmp_path, env) for c in cli]
        assert "trial" in outputs[0]  # status
        assert "active" in outputs[1]  # activate
        assert "iot_bridge_snowflake" in outputs[3]  # reactivate after the vendor update
        assert "Deactivated" in outputs[4]  # deactivate
        if shutil.which("mosquitto_rr"):
            rr = [ln.strip() for ln in lines if ln.strip().startswith("mosquitto_rr")]
            activated = run_line(rr[0], tmp_path, env)
            assert '"ok":true' in activated and '"state":"active"' in activated
            assert '"state":"active"' in run_line(rr[1], tmp_path, env)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    assert demo.returncode == 0
