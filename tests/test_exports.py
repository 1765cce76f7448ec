"""The package's public surface is exactly ``mqtt_licensing.__all__`` (names load on first use)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mqtt_licensing


def test_all_lists_exactly_the_public_names() -> None:
    public = set(mqtt_licensing._EXPORTS) | {"__version__"}
    assert mqtt_licensing.__all__ == sorted(public)


@pytest.mark.parametrize("name", mqtt_licensing.__all__)
def test_each_public_name_resolves_to_the_packages_own_object(name: str) -> None:
    value = getattr(mqtt_licensing, name)
    if name == "__version__":
        assert isinstance(value, str) and value
    else:
        assert value.__name__ == name
        assert value.__module__.startswith("mqtt_licensing."), value.__module__


def test_a_name_outside_all_is_not_served() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = mqtt_licensing.Nope


def test_star_import_gives_the_public_names() -> None:
    # A fresh interpreter: the names are loaded lazily, so this one may already hold some of them.
    code = (
        "from mqtt_licensing import *; print(sorted(n for n in dir() if not n.startswith('__') or n == '__version__'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.strip() == str(sorted(mqtt_licensing.__all__))
