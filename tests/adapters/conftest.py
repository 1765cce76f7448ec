import pytest

from tests.helpers.activation import start_vendor


@pytest.fixture
def vendor(tmp_path):
    with start_vendor(tmp_path / "vendor") as handle:
        yield handle
