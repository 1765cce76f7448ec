"""The base of every signed document: a frozen dataclass of plain values, encoded as a map of
its fields (:meth:`Document.to_body`), and read back with each field's type checked
(:meth:`Document.from_body`) once :mod:`.signing` has checked the signature."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, ClassVar, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import ErrorCode, LicensingError
from .signing import VerifyingKey, open_document, sign_document

Check = typing.Callable[[str, str, Any], Any]  # (document type, field name, value) -> the value checked


class Document:
    """A signed document: a frozen dataclass of plain values, its type ``TYP``, checked field by
    field when read back (signatures are checked in :mod:`.signing` first)."""

    TYP: ClassVar[str]

    def to_body(self) -> dict[str, Any]:
        # Fields hold plain values (no nested dataclasses): a shallow copy, each tuple a list and
        # each map in one copied, is what dataclasses.asdict gave at a fraction of its cost (its
        # deep copy was ~40 us of every certificate signed).
        body: dict[str, Any] = {}
        for name, _check, _required in _plan(typing.cast(type, type(self))):
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = [dict(v) if isinstance(v, dict) else v for v in value]
            body[name] = value
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Self:
        values: dict[str, Any] = {}
        for name, check, required in _plan(typing.cast(type, cls)):  # the cache keys on the class
            if name not in body:
                if not required:
                    continue
                raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{cls.TYP} lacks field {name!r}")
            values[name] = check(cls.TYP, name, body[name])
        document = cls(**values)
        document.check()
        return document

    def check(self) -> None:
        """What must hold across fields once each has the right type (nothing, unless overridden)."""

    def sign(self, private_key: Ed25519PrivateKey) -> bytes:
        return sign_document(private_key, self.TYP, self.to_body())

    @classmethod
    def open(cls, blob: bytes, public_key: VerifyingKey) -> Self:
        return cls.from_body(open_document(blob, cls.TYP, public_key))


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """Resolving annotations costs milliseconds; documents are decoded on every server call."""
    return typing.get_type_hints(cls)


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, Check, bool], ...]:
    """(field name, its type check, required) per field of a document class, worked out once."""
    hints = _type_hints(cls)
    return tuple(
        (f.name, _checker(hints[f.name]), f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    )


@functools.cache
def _checker(hint: Any) -> Check:
    """The check of one type hint, worked out once: every field of every document decoded on
    every server call went through ``typing.get_origin`` and ``get_args`` (~20 us a request)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        nullable = type(None) in options
        checks = [_checker(option) for option in options if option is not type(None)]

        def union(typ: str, name: str, value: Any) -> Any:
            if value is None and nullable:
                return None
            for check in checks:
                try:
                    return check(typ, name, value)
                except LicensingError:
                    continue
            raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} has the wrong type")

        return union
    if origin is tuple:
        item = _checker(typing.get_args(hint)[0])

        def sequence(typ: str, name: str, value: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} must be a list")
            return tuple(item(typ, name, v) for v in value)

        return sequence
    if origin is dict:

        def mapping(typ: str, name: str, value: Any) -> Any:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} must be a map")
            return value

        return mapping
    if hint is int or hint is float:
        allowed = (int,) if hint is int else (int, float)
        what = "an integer" if hint is int else "a number"

        def number(typ: str, name: str, value: Any) -> Any:
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} must be {what}")
            return value

        return number
    if hint in (str, bytes, bool):

        def plain(typ: str, name: str, value: Any) -> Any:
            if not isinstance(value, hint):
                raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} must be {hint.__name__}")
            return value

        return plain
    return lambda _typ, _name, value: value


__all__ = ["Document"]
