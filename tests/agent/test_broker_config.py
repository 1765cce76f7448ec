"""The shipped broker_config/*.yaml files load and validate (they are documentation that runs)."""

from pathlib import Path

import pytest

from mqtt_licensing.adapters.amqtt.runner import load_config
from mqtt_licensing.agent.config import AgentConfig
from mqtt_licensing.core.passwords import verify_password

CONFIGS = sorted((Path(__file__).parents[2] / "broker_config").glob("*.yaml"))
PLUGIN = "mqtt_licensing.adapters.amqtt.LicensingPlugin"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_validates(path, tmp_path, vendor):
    config = load_config(path)
    section = dict(config["plugins"][PLUGIN])
    section["vendor_public_key"] = vendor.public_key_text  # the example points at ../vendor-data
    agent = AgentConfig.from_dict(section)
    agent.validate()
    assert verify_password("change-me", agent.admins["admin"])
    assert Path(agent.state_dir).is_absolute()
