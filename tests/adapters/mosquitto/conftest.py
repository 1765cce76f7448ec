"""Every test here starts Debian's Mosquitto with the plugin built from this checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqtt_licensing.adapters.mosquitto.build import build
from tests.helpers.mosquitto import missing


@pytest.fixture(scope="session")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    return build(tmp_path_factory.mktemp("plugin") / "mqtt_licensing_mosquitto.so")
