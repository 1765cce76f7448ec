"""Reliability and security suite (issue 5): bounded, real processes, real sockets on 127.0.0.1.

Scale the randomised parts up with RELIABILITY_SCALE (default 1; e.g. 5 for a soak run).
"""

import pytest

from tests.helpers.activation import start_vendor


@pytest.fixture
def vendor(tmp_path):
    with start_vendor(tmp_path / "vendor") as handle:
        yield handle
