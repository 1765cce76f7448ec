"""Fixtures of the adapter tests: the Mosquitto plugin built from this checkout, and the contract
tests' broker of either adapter (amqtt with the agent inside; Mosquitto with the plugin and the
agent beside it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mqtt_licensing.adapters.mosquitto.build import build
from tests.helpers.broker import BrokerHandle
from tests.helpers.mosquitto import MosquittoHandle, missing


@pytest.fixture(scope="session")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    return build(tmp_path_factory.mktemp("plugin") / "mqtt_licensing_mosquitto.so")


@pytest.fixture(params=["amqtt", "mosquitto"])
def licensed_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """``licensed_broker(vendor=..., **agent_options)``: a started broker of this adapter, as a
    context manager with ``port``, ``agent``, ``call``, ``admin()`` and ``status()``."""
    if request.param == "amqtt":
        factory: Any = lambda **options: BrokerHandle(tmp_path / "amqtt-state", **options).start()  # noqa: E731
    else:
        plugin_path = request.getfixturevalue("plugin")
        factory = lambda **options: MosquittoHandle(tmp_path / "mosquitto", plugin_path, **options)  # noqa: E731
    factory.adapter = request.param  # where the adapters may differ (CONNACK codes they can send)
    return factory
