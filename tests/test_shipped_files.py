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
CONFIGS = sorted((REPO / "broker_config").glob("*.yaml"))
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
