"""Shared pytest setup. Reusable fixtures as plain helpers live in tests/helpers/.

Tiers (markers, declared in pyproject.toml): ``browser``, ``postgres``, ``reliability`` and
``soak`` are applied here by fixture and by folder, so a new test lands in the right tier without
remembering a decorator. ``./scripts/test.sh --fast`` deselects all four; the full suite runs them.
Under pytest-xdist (``scripts/test.sh``) the files are collected longest first, by the measured
seconds in tests/durations.json (tests/helpers/durations.py): the workers take whole files in that
order, so no long file starts last and stretches the run. ``--reverse`` (or
MQTT_LICENSING_TEST_REVERSE=1) then runs the collected tests in reverse order: the suite must not
depend on its order.
"""

import logging
import os
import tempfile
from pathlib import Path

import pytest

from tests.helpers import durations
from tests.helpers.activation import start_vendor

logging.getLogger("amqtt").setLevel(logging.WARNING)

_TESTS = Path(__file__).parent
_BROWSER_FIXTURES = {"browser", "page", "browser_page"}


def pytest_configure(config: pytest.Config) -> None:
    """No test may touch the host's trial marker (/var/lib/mqtt-licensing/trial.json): fixtures wider
    than one test (a module's broker) start before the per-test marker below is set, so the whole
    session gets a marker of its own first. Under pytest-xdist each worker is a session: it inherits
    the controller's marker, and takes one of its own (workers run side by side)."""
    if not os.environ.get("MQTT_LICENSING_TRIAL_MARKER") or hasattr(config, "workerinput"):
        os.environ["MQTT_LICENSING_TRIAL_MARKER"] = str(
            Path(tempfile.mkdtemp(prefix="mqtt-licensing-tests-")) / "trial.json"
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse", action="store_true", help="run the collected tests in reverse order")


def _tier(item: pytest.Item) -> str | None:
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & _BROWSER_FIXTURES:
        return "browser"
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "pg_cluster" in fixtures or params.get("database_url") == "postgresql":
        return "postgres"
    if _TESTS / "reliability" in item.path.parents:
        return "reliability"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item)
        if tier is not None:
            item.add_marker(tier)
    if hasattr(config, "workerinput"):  # an xdist worker: every worker sorts alike (they must agree)
        _longest_files_first(items)
    if config.getoption("--reverse") or os.environ.get("MQTT_LICENSING_TEST_REVERSE") == "1":
        items.reverse()


def _longest_files_first(items: list[pytest.Item]) -> None:
    """Stable: a file's tests keep their order, unmeasured files keep theirs after the measured."""
    seconds = durations.load()
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(item.nodeid.split("::")[0], index)

    def key(item: pytest.Item) -> tuple[float, int]:
        name = item.nodeid.split("::")[0]
        return -seconds.get(name, 0.0), first_seen[name]

    items.sort(key=key)


@pytest.fixture
def vendor(tmp_path):
    """A real activation server on an ephemeral port (tests/helpers/activation.py)."""
    with start_vendor(tmp_path / "vendor") as handle:
        yield handle


@pytest.fixture(autouse=True)
def _own_trial_marker(tmp_path_factory, monkeypatch):
    """Each test gets its own per-host trial marker: one test's trial must not use up another's."""
    monkeypatch.setenv("MQTT_LICENSING_TRIAL_MARKER", str(tmp_path_factory.mktemp("marker") / "trial.json"))
