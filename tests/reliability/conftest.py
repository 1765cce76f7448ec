"""Reliability and security suite (issue 5): bounded, real processes, real sockets on 127.0.0.1.

Scale the randomised parts up with RELIABILITY_SCALE (default 1; e.g. 5 for a soak run).
"""

import logging

import pytest

from tests.helpers.activation import start_vendor
from tests.reliability.faults import ExceptionLog


@pytest.fixture
def vendor(tmp_path):
    with start_vendor(tmp_path / "vendor") as handle:
        yield handle


@pytest.fixture(scope="module")
def exceptions():
    handler = ExceptionLog()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)
