"""README's offline and floating steps run as written, in a fresh folder.

Main: offline step 2 and floating step 2 failed as written (no port, no admin login, and
placeholders such as `http://vendor:8700` and `vendor.pub` that looked like real values).
Here every line of the two sections' `sh` blocks runs in order, in bash, with the venv on
PATH. The only change: the well-known port numbers (WELL_KNOWN) become free ones, in
the commands and in a copy of broker_config/ (a test must pass while they are taken)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mqtt_licensing.servers._run import free_port

REPO = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
SECTIONS = ("## Offline (air-gapped) activation, step by step", "## Floating licenses, step by step")
WELL_KNOWN = ("1884", "1885", "8700", "8800")

pytestmark = pytest.mark.timeout(180)


def section_lines(heading: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    body = text.split(heading, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", body, re.S)
    assert blocks, f"{heading}: no sh block"
    return [ln for block in blocks for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def mapped(text: str, ports: dict[str, str]) -> str:
    return re.sub(r"\b(" + "|".join(WELL_KNOWN) + r")\b", lambda m: ports[m.group(1)], text)


def wait_port(port: int, proc: subprocess.Popen[Any], line: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{line}: exited {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{line}: port {port} never opened")


def test_readme_offline_and_floating_steps_run_as_written(tmp_path):
    ports = {p: str(free_port()) for p in WELL_KNOWN}
    shutil.copytree(REPO / "broker_config", tmp_path / "broker_config")
    for config in (tmp_path / "broker_config").glob("*.yaml"):
        config.write_text(mapped(config.read_text(), ports).replace("0.0.0.0:", "127.0.0.1:"))
    env = dict(os.environ) | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if not k.startswith("MQTT_LICENSING_") or k.endswith("TRIAL_MARKER")}
    exports: list[str] = []
    background: list[subprocess.Popen[Any]] = []
    outputs: dict[str, str] = {}
    try:
        for heading in SECTIONS:
            for raw in section_lines(heading):
                line = mapped(raw, ports)
                command = line.split("  #")[0].strip()
                if command.startswith("export "):
                    exports.append(command)
                    continue
                script = "; ".join([*exports, command.removesuffix("&").strip()])
                if command.endswith("&"):
                    proc = subprocess.Popen(
                        ["bash", "-c", f"exec {script}" if not exports else script],
                        cwd=tmp_path,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                    background.append(proc)
                    wanted = [int(p) for p in ports.values() if re.search(rf"\b{p}\b", line)]
                    wait_port(wanted[0], proc, raw)
                    continue
                result = run(script, tmp_path, env)
                assert result.returncode == 0, f"{raw}\n{result.stdout}\n{result.stderr}"
                outputs[raw] = result.stdout
        offline = section_lines(SECTIONS[0])
        assert "active" in outputs[next(ln for ln in offline if "--usage-license-file" in ln)]
        status = next(ln for ln in section_lines(SECTIONS[1]) if ln.startswith("mqtt-licensing status"))
        script = "; ".join([*exports, mapped(status, ports).split("  #")[0]])
        deadline = time.monotonic() + 30  # the broker leases at start, in the background
        while "active" not in outputs[status] and time.monotonic() < deadline:
            time.sleep(0.5)
            outputs[status] = run(script, tmp_path, env).stdout
        assert "active" in outputs[status] and "floating" in outputs[status], outputs[status]
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGINT)
        for proc in background:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[Any]:
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
