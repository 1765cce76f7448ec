"""Broker configs: the shipped broker_config/*.yaml load and validate (they are documentation
that runs), and every config mistake is one line naming the fix, exit 2, no traceback."""

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from mqtt_licensing.adapters.amqtt.exposure import EXAMPLE_ADMIN_HASHES, exposure_problem
from mqtt_licensing.adapters.amqtt.runner import ConfigError, load_config
from mqtt_licensing.adapters.mosquitto.runner import load_config as load_mosquitto_agent_config
from mqtt_licensing.agent.config import AgentConfig
from mqtt_licensing.core.passwords import hash_password, verify_password
from tests.helpers.cli import run_cli
from tests.helpers.ports import free_listeners

CONFIGS = sorted((Path(__file__).parents[2] / "broker_config").glob("*.yaml"))
PLUGIN = "mqtt_licensing.adapters.amqtt.LicensingPlugin"


def installed(tmp_path: Path, source: Path, vendor) -> Path:
    """The config as shipped, in a folder laid out like a deployment (../vendor-data/vendor.pub)."""
    (tmp_path / "broker_config").mkdir()
    (tmp_path / "vendor-data").mkdir()
    (tmp_path / "vendor-data" / "vendor.pub").write_text(vendor.public_key_text)
    return Path(shutil.copy(source, tmp_path / "broker_config" / source.name))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_validates(path, tmp_path, vendor):
    if path.name == "mosquitto-agent.yaml":  # the agent beside Mosquitto: mosquitto: and agent: sections
        _settings, agent = load_mosquitto_agent_config(installed(tmp_path, path, vendor))
    else:
        config = load_config(installed(tmp_path, path, vendor))
        agent = AgentConfig.from_dict(dict(config["plugins"][PLUGIN]))
        agent.validate()
    assert verify_password("change-me", agent.admins["admin"])
    assert Path(agent.state_dir).is_absolute()
    assert Path(agent.vendor_public_key) == tmp_path / "vendor-data" / "vendor.pub"


def test_a_relative_trial_marker_resolves_from_the_config_folder(tmp_path, vendor, monkeypatch):
    """Main: `trial_marker: trial.json` resolved from the working directory, so two configs in
    different folders started from one folder shared (and wrote) one marker there."""
    monkeypatch.chdir(tmp_path)
    markers = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        path = installed(tmp_path / name, CONFIGS[0], vendor)
        path.write_text(path.read_text().replace("state_dir:", "trial_marker: trial.json\n    state_dir:", 1))
        agent = AgentConfig.from_dict(dict(load_config(path)["plugins"][PLUGIN]))
        markers.append(agent.trial_marker)
    assert markers == [str(tmp_path / n / "broker_config" / "trial.json") for n in ("one", "two")]


def run_broker_cli(config: Path) -> subprocess.CompletedProcess[str]:
    """In-process: main() returns the exit code the process would have."""
    return run_cli("broker", "-c", config)


def edited(tmp_path: Path, vendor, old: str, new: str) -> Path:
    """The first shipped config on free ports, with one edit; ``old`` and ``new`` may name a port: ``{default}``."""
    path = installed(tmp_path, CONFIGS[0], vendor)
    ports = free_listeners(path)
    old, new = old.format(**ports), new.format(**ports)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "mistake",
    ["missing file", "bad yaml", "misspelled key", "missing vendor.pub", "port in use", "example admin on 0.0.0.0"],
)
def test_a_config_mistake_is_one_line_naming_the_fix_exit_2(tmp_path, vendor, mistake):
    busy = None
    if mistake == "missing file":
        path, expect = tmp_path / "nope.yaml", "no such file"
    elif mistake == "bad yaml":
        path, expect = edited(tmp_path, vendor, "    type: tcp", "    type: [tcp"), "line"
    elif mistake == "misspelled key":
        path, expect = edited(tmp_path, vendor, "    vendor_url:", "    vendor_ulr:"), "did you mean 'vendor_url'"
    elif mistake == "missing vendor.pub":
        path = installed(tmp_path, CONFIGS[0], vendor)
        free_listeners(path)
        (tmp_path / "vendor-data" / "vendor.pub").unlink()
        expect = "vendor.pub"
    elif mistake == "example admin on 0.0.0.0":
        path = edited(tmp_path, vendor, "bind: 127.0.0.1:{default}", "bind: 0.0.0.0:{default}")
        expect = (
            "still has the published example password and the broker would listen on listeners.default.bind 0.0.0.0"
        )
    else:
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = edited(tmp_path, vendor, "bind: 127.0.0.1:{default}", f"bind: 127.0.0.1:{port}")
        expect = f"port {port} is in use"
    try:
        result = run_broker_cli(path)
    finally:
        if busy is not None:
            busy.close()
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0].startswith("error [invalid_field]: ") and expect in lines[0], lines[0]
    if mistake == "example admin on 0.0.0.0":
        assert "mqtt-licensing hash-password" in lines[0]


def test_load_config_raises_config_error_not_a_yaml_or_dacite_error(tmp_path, vendor):
    path = edited(tmp_path, vendor, "    enforce_existing: false", "    enforce_existing: false\n    surprise: 1")
    with pytest.raises(ConfigError, match="unknown agent config key 'surprise'"):
        load_config(path)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_listen_on_loopback_with_published_hashes_known(path, tmp_path, vendor):
    if path.name == "mosquitto-agent.yaml":  # its listeners are in mosquitto.conf beside it
        _settings, agent = load_mosquitto_agent_config(installed(tmp_path, path, vendor))
        assert set(agent.admins.values()) <= EXAMPLE_ADMIN_HASHES
        conf = (path.parent / "mosquitto.conf").read_text().splitlines()
        listeners = [line.split() for line in conf if line.startswith("listener ")]
        assert listeners and all(fields[2:] == ["127.0.0.1"] for fields in listeners)
        return
    config = load_config(installed(tmp_path, path, vendor))
    section = config["plugins"][PLUGIN]
    assert set(section["admins"].values()) <= EXAMPLE_ADMIN_HASHES  # the refusal knows every published hash
    assert exposure_problem(config, [section]) is None  # as shipped: 127.0.0.1 only, so it starts
    for listener in config["listeners"].values():
        assert listener["bind"].startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("bind", "admin_password", "refused"),
    [
        ("0.0.0.0:1883", "change-me", True),
        (":1883", "change-me", True),
        ("[::]:1883", "demo-admin", True),  # the demo's password, hashed again with a new salt
        ("192.0.2.7:1883", "change-me", True),
        ("127.0.0.1:1883", "change-me", False),
        ("[::1]:1883", "demo-admin", False),
        ("localhost:1883", "change-me", False),
        ("0.0.0.0:1883", "a-real-secret", False),
    ],
)
def test_a_published_admin_login_is_served_on_loopback_only(bind, admin_password, refused):
    encoded = next(iter(EXAMPLE_ADMIN_HASHES)) if admin_password == "change-me" else hash_password(admin_password)
    config = {"listeners": {"default": {"type": "tcp", "bind": bind}}}
    problem = exposure_problem(config, [{"admins": {"admin": encoded}}])
    assert (problem is not None) == refused
    if refused:
        assert problem is not None
        assert "mqtt-licensing hash-password" in problem and "\n" not in problem


def test_http_bind_beyond_loopback_counts_too():
    config = {"listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:11883"}}}
    section = {"admins": {"admin": next(iter(EXAMPLE_ADMIN_HASHES))}, "http_bind": "0.0.0.0:18080"}
    assert "http_bind" in (exposure_problem(config, [section]) or "")
