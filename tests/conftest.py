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
