"""The CLI's rough edges as a new user meets them: --version, -h, a mistyped plugin class, a demo
whose port is taken, followers piped into `head`, and --watch printing only real changes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mqtt_licensing import __version__
from mqtt_licensing.core.errors import LicensingError
from tests.cli.test_follow import ENV, Lines

CLI = [sys.executable, "-m", "mqtt_licensing.cli.main"]
SHIPPED = Path(__file__).resolve().parents[2] / "broker_config" / "default.yaml"


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=50, cwd=cwd, env=ENV)


def test_version_and_h_for_help_on_the_license_verbs():
    done = _run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"mqtt-licensing {__version__}"
    done = _run("status", "-h")
    assert done.returncode == 0 and "-H HOST, --host HOST" in done.stdout and "--cafile" in done.stdout


def test_parsing_the_command_line_loads_no_database_library():
    """Every CLI call builds the whole parser: were SQLAlchemy and Alembic loaded for it, each
    `mqtt-licensing status` would spend ~0.4 s of CPU on them (the test suite runs hundreds)."""
    probe = (
        "import sys; from mqtt_licensing.cli.main import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic', 'uvicorn', 'amqtt'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=50, env=ENV)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_mistyped_plugin_class_is_one_line(tmp_path):
    text = SHIPPED.read_text().replace("amqtt.LicensingPlugin", "amqtt.LicensingPlugn")
    (tmp_path / "broker.yaml").write_text(text.replace("0.0.0.0:", "127.0.0.1:1"))  # never reached
    done = _run("broker", "-c", str(tmp_path / "broker.yaml"))
    assert done.returncode == 2 and "internal_error" not in done.stderr, done.stderr
    assert "did you mean 'mqtt_licensing.adapters.amqtt.LicensingPlugin'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("busy", ["--port", "--vendor-port"])
def test_a_demo_whose_port_is_taken_is_one_line_and_leaves_the_running_ones_files(tmp_path, busy):
    folder = tmp_path / "demo-data"
    folder.mkdir()
    (folder / "broker.yaml").write_text("# the running demo's\n")
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        free.bind(("127.0.0.1", 0))
        ports = {"--port": free.getsockname()[1], "--vendor-port": free.getsockname()[1]}
        ports[busy] = taken.getsockname()[1]
        free.close()
        args = [str(a) for pair in ports.items() for a in pair]
        done = _run("demo", "--dir", str(folder), *args, cwd=tmp_path)
    assert done.returncode == 2 and f"error [port_in_use]: port {ports[busy]}" in done.stderr, done.stderr
    assert busy in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (folder / "broker.yaml").read_text() == "# the running demo's\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("verb", [["events", "--since", "1h"], ["status", "--watch"]])
def test_a_follower_ends_when_head_leaves_on_an_idle_broker(licensing, verb):
    with licensing.broker.admin() as operator:  # two events in the backlog, then nothing more happens
        with pytest.raises(LicensingError):
            operator.request("reactivate")
    proc = subprocess.Popen(
        [*CLI, *verb, "--port", str(licensing.port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() and proc.stdout.readline()  # `head -2` got its two lines ...
        proc.stdout.close()  # ... and left
        assert proc.wait(timeout=30) == 141
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.timeout(90)
def test_watch_prints_real_changes_only_not_the_clock_ticking(licensing):
    proc = subprocess.Popen(
        [*CLI, "status", "--watch", "--port", str(licensing.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        out.wait_for(lambda line: line.startswith("Trial:"))  # "started at ... (now)"
        licensing.broker.restart()  # seconds later: the same document again, every relative time moved on
        err.wait_for(lambda line: line == "reconnected", timeout=60)
        with licensing.broker.admin() as operator, pytest.raises(LicensingError):
            operator.request("reactivate")  # a real change: Last failure
        out.wait_for(lambda line: line.startswith("Last failure:"))
        changed = out.lines[next(i for i, line in enumerate(out.lines) if "changed ---" in line) + 1 :]
        assert [line.split(":", 1)[0] for line in changed] == ["Last failure"], "\n".join(out.lines)
    finally:
        proc.kill()
        proc.wait(timeout=10)
