"""``mqtt-licensing mosquitto build | agent``: the path printed, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.mosquitto import missing

CLI = [sys.executable, "-m", "mqtt_licensing.cli.main", "mosquitto"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False, env=env)


@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_build_prints_the_plugins_path_and_caches_it(tmp_path: Path) -> None:
    out = tmp_path / "lib" / "plugin.so"
    first = run("build", "-o", str(out))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == str(out.resolve()) and out.is_file()
    assert out.stat().st_mode & 0o777 == 0o755  # Mosquitto may run as another user
    built_at = out.stat().st_mtime_ns
    assert run("build", "-o", str(out)).returncode == 0
    assert out.stat().st_mtime_ns == built_at  # the same sources: not compiled again


def test_build_without_a_compiler_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc")}
    result = run("build", "-o", str(tmp_path / "p.so"), env=env)
    assert result.returncode == 2
    assert "is not installed: install gcc" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agent: {}\n", "needs a mosquitto: and an agent: section"),
        ("mosquitto: {socket: a.sock}\nagent: {admns: {}}\n", "unknown agent key 'admns' (did you mean 'admins'?)"),
        ("mosquitto: {sockt: a.sock}\nagent: {}\n", "unknown mosquitto key 'sockt' (did you mean 'socket'?)"),
    ],
)
def test_agent_config_mistakes_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    result = run("agent", "-c", str(path))
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
