"""The shipped configs run side by side, their logins are the ones README states, and what they
(and the demo) write into the repo root is git-ignored."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqtt_licensing.core.passwords import verify_password

REPO = Path(__file__).parents[1]
# amqtt broker configs; mosquitto-agent.yaml (the agent beside Mosquitto) is checked on its own below
CONFIGS = sorted(p for p in (REPO / "broker_config").glob("*.yaml") if p.name != "mosquitto-agent.yaml")
MOSQUITTO_AGENT = REPO / "broker_config" / "mosquitto-agent.yaml"
PLUGIN = "mqtt_licensing.adapters.amqtt.LicensingPlugin"


def agent_section(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["plugins"][PLUGIN]


def test_the_shipped_configs_can_run_side_by_side():
    binds = [yaml.safe_load(p.read_text())["listeners"]["default"]["bind"] for p in CONFIGS]
    states = [(p.parent / agent_section(p)["state_dir"]).resolve() for p in CONFIGS]
    assert len(set(binds)) == len(CONFIGS) and len(set(states)) == len(CONFIGS)


def test_readme_states_the_logins_of_the_shipped_configs():
    readme = REPO / "README.md"
    logins = dict(re.findall(r"`(\w+)` / `([\w-]+)`", readme.read_text()))
    for path in CONFIGS:
        section = agent_section(path)
        for user, hashed in {**section.get("admins", {}), **section.get("users", {})}.items():
            assert user in logins and verify_password(logins[user], hashed), (path.name, user)


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the git checkout")
def test_what_the_configs_and_the_demo_write_is_ignored():
    written = {"demo-data/vendor/vendor.key"}
    for path in CONFIGS:
        section = agent_section(path)
        written.add(str((path.parent / section["state_dir"]).resolve().relative_to(REPO) / "identity.key"))
        written.add(str((path.parent / section["vendor_public_key"]).resolve().relative_to(REPO)))
    for name in sorted(written):
        ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO, timeout=30)
        assert ignored.returncode == 0, f"{name} is not git-ignored"


def test_the_mosquitto_pair_loads_and_matches(tmp_path, vendor):
    from mqtt_licensing.adapters.mosquitto.runner import load_config

    # a copy beside a vendor.pub, as in a checkout where `vendor init vendor-data` ran
    (tmp_path / "broker_config").mkdir()
    (tmp_path / "vendor-data").mkdir()
    (tmp_path / "vendor-data" / "vendor.pub").write_text(vendor.public_key_text)
    copy = tmp_path / "broker_config" / MOSQUITTO_AGENT.name
    copy.write_text(MOSQUITTO_AGENT.read_text())
    settings, config = load_config(copy)
    conf = (REPO / "broker_config" / "mosquitto.conf").read_text()
    assert f"plugin_opt_socket {Path(settings.socket).name}" in conf
    assert f"listener {settings.ws_port} 127.0.0.1" in conf
    others = {(p.parent / agent_section(p)["state_dir"]).resolve().name for p in CONFIGS}
    assert Path(config.state_dir).name not in others
    logins = dict(re.findall(r"`(\w+)` / `([\w-]+)`", (REPO / "README.md").read_text()))
    for user, hashed in {**config.admins, **config.users}.items():
        assert user in logins and verify_password(logins[user], hashed), user
