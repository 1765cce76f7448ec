"""Shared pytest setup. Reusable fixtures as plain helpers live in tests/helpers/."""

import logging

import pytest

from tests.helpers.activation import start_vendor

logging.getLogger("amqtt").setLevel(logging.WARNING)


@pytest.fixture
def vendor(tmp_path):
    """A real activation server on an ephemeral port (tests/helpers/activation.py)."""
    with start_vendor(tmp_path / "vendor") as handle:
        yield handle


@pytest.fixture(autouse=True)
def _own_trial_marker(tmp_path_factory, monkeypatch):
    """Each test gets its own per-host trial marker (issue 10): one test's trial must not use up another's."""
    monkeypatch.setenv("MQTT_LICENSING_TRIAL_MARKER", str(tmp_path_factory.mktemp("marker") / "trial.json"))
