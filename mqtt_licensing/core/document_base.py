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


class Document:
    """A signed document: a frozen dataclass of plain values, its type ``TYP``, checked field by
    field when read back (signatures are checked in :mod:`.signing` first)."""

    TYP: ClassVar[str]

    def to_body(self) -> dict[str, Any]:
        # Fields hold plain values (no nested dataclasses): a shallow copy, each tuple a list and
        # each map in one copied, is what dataclasses.asdict gave at a fraction of its cost (its
        # deep copy was ~40 us of every certificate signed).
        body: dict[str, Any] = {}
        for name, _hint, _required in _plan(typing.cast(type, type(self))):
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = [dict(v) if isinstance(v, dict) else v for v in value]
            body[name] = value
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Self:
        values: dict[str, Any] = {}
        for name, hint, required in _plan(typing.cast(type, cls)):  # the cache keys on the class
            if name not in body:
                if not required:
                    continue
                raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{cls.TYP} lacks field {name!r}")
            values[name] = _check_type(cls.TYP, name, body[name], hint)
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
def _plan(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(field name, type hint, required) per field of a document class, worked out once."""
    hints = _type_hints(cls)
    return tuple(
        (f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    )


def _check_type(typ: str, name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            if option is not type(None):
                try:
                    return _check_type(typ, name, value, option)
                except LicensingError:
                    continue
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} has the wrong type")
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, (list, tuple)):
            raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} must be a list")
        return tuple(_check_type(typ, name, v, item) for v in value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} must be a map")
        return value
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} must be an integer")
    if hint is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} must be a number")
    if hint in (str, bytes, bool) and not isinstance(value, hint):
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"{typ}.{name} must be {hint.__name__}")
    return value


__all__ = ["Document"]
