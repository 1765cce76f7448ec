"""Request fields as the ``$license`` contract reads them: a wrong type is always
``invalid_field``, an absent required field ``missing_field``, never a crash further in."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .errors import ErrorCode, LicensingError


def require_str(fields: dict[str, Any], name: str, *, max_len: int = 4096) -> str:
    if name not in fields or fields[name] is None:
        raise LicensingError(ErrorCode.MISSING_FIELD, f"field {name!r} is required")
    value = fields[name]
    if not isinstance(value, str) or not value.strip():
        raise LicensingError(ErrorCode.INVALID_FIELD, f"field {name!r} must be a non-empty string")
    if len(value) > max_len:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"field {name!r} is longer than {max_len} characters")
    return value


def require_url(fields: dict[str, Any], name: str, *, max_len: int = 2048) -> str:
    """An http(s) URL with a host; anything else is invalid_field here, not a crash in the HTTP client."""
    url = require_str(fields, name, max_len=max_len)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError unless a number in 0..65535
        url.encode("utf-8")  # a lone surrogate from JSON cannot go on the wire
    except (ValueError, UnicodeError):
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or port == 0
        or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url)
    ):
        raise LicensingError(ErrorCode.INVALID_FIELD, f"field {name!r} must be an http:// or https:// URL with a host")
    return url


def optional_str(fields: dict[str, Any], name: str, default: str | None = None, *, max_len: int = 4096) -> str | None:
    if fields.get(name) is None:
        return default
    return require_str(fields, name, max_len=max_len)


def optional_seconds(fields: dict[str, Any], name: str, *, most: float = 366 * 86400) -> float | None:
    """A non-negative number of seconds, or None when absent."""
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= most:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"field {name!r} must be a number of seconds from 0 to {most:g}")
    return float(value)


def optional_str_list(fields: dict[str, Any], name: str) -> list[str] | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > 64:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"field {name!r} must be a list of strings")
    return value
