"""The servers are built from objects, not mixins: no class in ``mqtt_licensing.servers`` inherits
from more than one class of the project. A facade holds its parts (``ActivationService.admin``,
``FloatingService.leases`` ...) and each part is built from a frozen context, so a reader finds
what ``self.ctx`` is in one place. Protocols, dataclasses, exceptions and enums are not counted:
they are not state shared through ``self``."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
from typing import Protocol

import mqtt_licensing.servers as servers
from mqtt_licensing.servers.activation.records import ServiceContext
from mqtt_licensing.servers.activation.service import ActivationService
from mqtt_licensing.servers.floating.pool import FloatingContext
from mqtt_licensing.servers.floating.service import FloatingService


def _modules() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(servers.__path__, servers.__name__ + ".")]
    return [name for name in names if ".migrations" not in name]  # Alembic scripts run only inside a migration


def _counted(base: type) -> bool:
    if not base.__module__.startswith("mqtt_licensing."):
        return False
    if getattr(base, "_is_protocol", False) or Protocol in base.__bases__:
        return False
    return not (dataclasses.is_dataclass(base) or issubclass(base, (BaseException, enum.Enum)))


def test_no_class_in_servers_inherits_from_more_than_one_project_class() -> None:
    seen, offenders = 0, []
    for name in _modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name:
                continue  # imported here, checked where it is defined
            seen += 1
            ancestors = [base for base in cls.__mro__[1:] if base is not object and _counted(base)]
            if len(ancestors) > 1:
                offenders.append(f"{name}.{cls.__qualname__}: {[b.__qualname__ for b in ancestors]}")
    assert seen > 30  # the walk found the package's classes (a broken walk must not pass)
    assert offenders == []


def test_the_services_are_facades_over_parts_sharing_one_frozen_context(tmp_path) -> None:
    activation = ActivationService.open(tmp_path / "vendor")
    floating = FloatingService.open(tmp_path / "floating")
    try:
        assert ActivationService.__mro__[1:] == (object,) and FloatingService.__mro__[1:] == (object,)
        for ctx_type, service, parts in (
            (ServiceContext, activation, ("admin", "instances", "usage", "forwarded", "codes")),
            (FloatingContext, floating, ("pool", "leases", "usage")),
        ):
            assert dataclasses.fields(ctx_type) and ctx_type.__dataclass_params__.frozen  # type: ignore[union-attr]
            for part in parts:
                assert getattr(service, part).ctx is service.ctx, part
    finally:
        activation.close()
        floating.close()
