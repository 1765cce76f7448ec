"""The shape of the code: parts are objects with explicit constructors, not mixins.

A class that inherits from two of the project's classes shares all of its state through
``self`` with both: a reader must open every base to learn what an attribute is, and no part can
be built or tested alone. Protocols (interfaces) are not counted.
"""

from __future__ import annotations

import dataclasses
import enum
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
    """The project classes ``cls`` inherits from, directly or not: Protocols (interfaces), dataclasses,
    exceptions and enums aside (they share no state through ``self``)."""
    return [
        base
        for base in cls.__mro__[1:]
        if base.__module__.startswith(PROJECT)
        and not getattr(base, "_is_protocol", False)
        and not dataclasses.is_dataclass(base)
        and not issubclass(base, (BaseException, enum.Enum))
    ]


def _offenders(package: str) -> tuple[int, list[str]]:
    """How many classes the package defines, and those with more than one project base."""
    seen, found = 0, []
    for name in _modules(package):
        module = importlib.import_module(name)
        for _attr, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name:
                continue  # imported here, judged where it is defined
            seen += 1
            bases = _project_bases(cls)
            if len(bases) > 1:
                found.append(f"{name}.{cls.__qualname__}({', '.join(b.__qualname__ for b in bases)})")
    return seen, found


@pytest.mark.parametrize("package", ["mqtt_licensing.agent"])
def test_no_class_inherits_from_two_project_classes(package):
    seen, offenders = _offenders(package)
    assert seen > 20  # the walk found the package's classes: a broken walk must not pass
    assert offenders == []


def test_the_check_sees_a_mixin():
    """The walk above must be able to fail: a class built from two project classes is reported."""
    from mqtt_licensing.agent.access import Access
    from mqtt_licensing.agent.publisher import Publisher

    class Both(Access, Publisher):  # type: ignore[misc]  # the shape the agent had
        pass

    assert [b.__qualname__ for b in _project_bases(Both)] == ["Access", "Publisher"]
