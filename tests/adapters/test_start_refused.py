"""The broker refuses to start (one line, exit 2) when the agent cannot load its state: amqtt
would only log what ``on_broker_pre_start`` raises and run on, admitting only admins. Also the
config mistakes test_broker_config.py did not cover yet (each was a traceback or an
``internal_error``). The CLI runs in-process: main() returns what the process exits with."""

import json
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.ports import free_listeners

from .test_broker_config import CONFIGS, installed


def _config_with_free_port(tmp_path: Path, vendor) -> Path:
    path = installed(tmp_path, CONFIGS[0], vendor)
    free_listeners(path)
    return path


@pytest.mark.parametrize("damage", ["state too new", "bad identity key", "state folder is a file"])
def test_broker_refuses_to_start_when_the_agent_cannot_load(tmp_path, vendor, damage):
    path = _config_with_free_port(tmp_path, vendor)
    state = tmp_path / "license-state"
    if damage == "state folder is a file":
        state.write_text("not a folder")
        expect = "cannot be used"
    else:
        state.mkdir()
        if damage == "state too new":
            (state / "state.json").write_text(json.dumps({"version": 999, "trial_started_at": 0}))
            expect = "error [state_too_new]: "
        else:
            (state / "identity.key").write_text("garbage")
            expect = "error [state_corrupt]: "
    before = {p.name: p.read_bytes() for p in state.iterdir()} if state.is_dir() else {}
    result = run_cli("broker", "-c", path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert expect in lines[0] and str(state) in lines[0], lines[0]
    for name, data in before.items():  # left as it was, for the newer version or the backup
        assert (state / name).read_bytes() == data
    debug = run_cli("--debug", "broker", "-c", path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("bind: 127.0.0.1:{default}", "bind: 127.0.0.1:notaport", "write HOST:PORT"),
        ("listeners:", "listenrs:", "did you mean 'listeners'?"),
        ("enforce_existing: false", "enforce_existing: maybe", 'field "enforce_existing" - should be "bool"'),
        ("vendor_public_key: ../vendor-data/vendor.pub", "vendor_public_key: garbage", "vendor.pub, or the key text"),
    ],
)
def test_more_config_mistakes_are_one_line_naming_the_fix(tmp_path, vendor, old, new, expect):
    path = installed(tmp_path, CONFIGS[0], vendor)
    old = old.format(**free_listeners(path))
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    result = run_cli("broker", "-c", path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0].startswith("error [invalid_field]: ") and expect in lines[0], lines[0]
