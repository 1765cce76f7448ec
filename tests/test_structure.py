"""The shape of the code: parts are objects with explicit constructors, not mixins.

A class that inherits from two of the project's classes shares all of its state through
``self`` with both: a reader must open every base to learn what an attribute is, and no part can
be built or tested alone. Protocols (interfaces) are not counted.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

PROJECT = "mqtt_licensing"


def _modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        names.append(info.name)
    return names


def _project_bases(cls: type) -> list[type]:
    """The project classes ``cls`` inherits from directly, Protocols (interfaces) aside."""
    return [b for b in cls.__bases__ if b.__module__.startswith(PROJECT) and not getattr(b, "_is_protocol", False)]


def _offenders(package: str) -> list[str]:
    found = []
    for name in _modules(package):
        module = importlib.import_module(name)
        for _attr, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name:
                continue  # imported here, judged where it is defined
            bases = _project_bases(cls)
            if len(bases) > 1:
                found.append(f"{name}.{cls.__qualname__}({', '.join(b.__qualname__ for b in bases)})")
    return found


@pytest.mark.parametrize("package", ["mqtt_licensing.agent"])
def test_no_class_inherits_from_two_project_classes(package):
    assert _offenders(package) == []


def test_the_check_sees_a_mixin():
    """The walk above must be able to fail: a class built from two project classes is reported."""
    from mqtt_licensing.agent.access import Access
    from mqtt_licensing.agent.publisher import Publisher

    class Both(Access, Publisher):  # the shape the agent had
        pass

    assert [b.__qualname__ for b in _project_bases(Both)] == ["Access", "Publisher"]
