"""The ``$license/*`` topic contract: request decoding, reply routing, topic rights.

Pure functions over bytes and strings; the agent and every broker adapter use
these so that the contract in topics.md lives in exactly one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, cast

import msgpack

from .errors import ErrorCode, LicensingError
from .fields import optional_seconds, optional_str, optional_str_list, require_str, require_url

PREFIX = "$license/"
STATUS_TOPIC = "$license/status"
EVENTS_TOPIC = "$license/events"
REPLY_ROOT = "$license/reply"


class Operation(StrEnum):
    """A license operation: the ``operation`` field of every reply (topics.md)."""

    ACTIVATE = "activate"
    REACTIVATE = "reactivate"
    DEACTIVATE = "deactivate"
    STATUS = "status"
    OFFLINE_REQUEST = "offline_request"
    OFFLINE_CANCEL = "offline_cancel"
    EVENTS_RECENT = "events_recent"


OPERATIONS: dict[str, Operation] = {
    "$license/activate": Operation.ACTIVATE,
    "$license/reactivate": Operation.REACTIVATE,
    "$license/deactivate": Operation.DEACTIVATE,
    "$license/status": Operation.STATUS,
    "$license/offline/request": Operation.OFFLINE_REQUEST,
    "$license/offline/cancel": Operation.OFFLINE_CANCEL,
    "$license/events/recent": Operation.EVENTS_RECENT,
}

#: Operations a reader (who may read status and events) may send as well as an admin.
READER_OPERATIONS = frozenset({Operation.STATUS, Operation.EVENTS_RECENT})

Encoding = Literal["json", "msgpack"]

DEFAULT_MAX_PAYLOAD = 64 * 1024
_MAX_CORRELATION_ID = 256
_FORBIDDEN_IN_CLIENT_ID = ("/", "+", "#", "\0")


@dataclass
class Request:
    operation: Operation
    encoding: Encoding  # the reply uses the same
    fields: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | int | None = None
    reply_to: str = ""


class RequestError(LicensingError):
    """A request that cannot be served; still carries enough to route the error reply."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        encoding: Encoding = "json",
        reply_to: str = "",
        correlation_id: str | int | None = None,
        operation: Operation | None = None,
    ) -> None:
        super().__init__(code, message)
        self.encoding = encoding
        self.reply_to = reply_to
        self.correlation_id = correlation_id
        self.operation = operation


def is_license_topic(topic: str) -> bool:
    return topic.startswith(PREFIX)


def default_reply_topic(client_id: str) -> str:
    return f"{REPLY_ROOT}/{client_id}"


def client_id_can_receive_replies(client_id: str) -> bool:
    """A client id with topic separators or wildcards would let it read other clients' replies."""
    return bool(client_id) and not any(ch in client_id for ch in _FORBIDDEN_IN_CLIENT_ID)


def reply_topic_allowed(topic: str, client_id: str) -> bool:
    """``reply_to`` must lie under ``$license/reply/<client_id>`` (that topic or below it)."""
    own = default_reply_topic(client_id)
    if not client_id_can_receive_replies(client_id):
        return False
    if topic == own:
        return True
    return topic.startswith(own + "/") and "+" not in topic and "#" not in topic and "\0" not in topic


def subscription_allowed(topic_filter: str, client_id: str, *, may_read_status: bool) -> bool:
    """May this client subscribe to ``topic_filter``? Only ever called for ``$license/...`` filters.

    Readers (and admins) may read status and events; everyone may read their own replies;
    no filter may reach into another client's reply subtree.
    """
    if topic_filter in (STATUS_TOPIC, EVENTS_TOPIC):
        return may_read_status
    if not client_id_can_receive_replies(client_id):
        return False
    levels = topic_filter.split("/")
    # $license/reply/<exact client id>[/...]: wildcards only below the client's own level
    return len(levels) >= 3 and levels[0] == "$license" and levels[1] == "reply" and levels[2] == client_id


def delivery_allowed(topic: str, client_id: str, *, may_read_status: bool) -> bool:
    """Defence in depth at delivery time: a reply only ever reaches its own client."""
    if topic.startswith(REPLY_ROOT + "/"):
        return reply_topic_allowed(topic, client_id)
    if topic in (STATUS_TOPIC, EVENTS_TOPIC):
        return may_read_status
    return False


def _sniff_encoding(payload: bytes) -> Encoding:
    stripped = payload.lstrip()
    if not stripped or stripped[:1] in (b"{", b"[", b'"') or stripped[:1].isdigit():
        return "json"
    first = payload[0]
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):  # msgpack map headers
        return "msgpack"
    return "json"


def decode_request(topic: str, payload: bytes, client_id: str, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Request:
    """Turn a PUBLISH on a ``$license/...`` topic into a :class:`Request`, or raise :class:`RequestError`."""
    encoding: Encoding = _sniff_encoding(payload) if payload else "json"
    default_reply = default_reply_topic(client_id)
    operation = OPERATIONS.get(topic)
    if len(payload) > max_payload:
        raise RequestError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"payload is {len(payload)} bytes; the limit is {max_payload}",
            encoding=encoding,
            reply_to=default_reply,
            operation=operation,
        )
    body = _decode_body(payload, encoding, default_reply, operation)

    correlation_id = body.get("correlation_id")
    if correlation_id is not None and not (
        (isinstance(correlation_id, str) and len(correlation_id) <= _MAX_CORRELATION_ID)
        or (isinstance(correlation_id, int) and not isinstance(correlation_id, bool) and abs(correlation_id) < 2**63)
    ):
        raise RequestError(
            ErrorCode.INVALID_FIELD,
            f"correlation_id must be a string of at most {_MAX_CORRELATION_ID} characters or an integer",
            encoding=encoding,
            reply_to=default_reply,
            operation=operation,
        )

    reply_to = body.get("reply_to", default_reply)
    if not isinstance(reply_to, str) or not reply_topic_allowed(reply_to, client_id):
        raise RequestError(
            ErrorCode.INVALID_REPLY_TO,
            f"reply_to must be {default_reply} or a topic below it",
            encoding=encoding,
            reply_to=default_reply,
            correlation_id=correlation_id,
            operation=operation,
        )

    if operation is None:
        raise RequestError(
            ErrorCode.UNKNOWN_OPERATION,
            f"{topic!r} is not a license operation (use one of: {', '.join(OPERATIONS)})",
            encoding=encoding,
            reply_to=reply_to,
            correlation_id=correlation_id,
        )
    fields = {k: v for k, v in body.items() if k not in ("correlation_id", "reply_to")}
    return Request(operation, encoding, fields, correlation_id, reply_to)


def _decode_body(payload: bytes, encoding: Encoding, reply_to: str, operation: Operation | None) -> dict[str, Any]:
    def fail(message: str) -> RequestError:
        return RequestError(
            ErrorCode.MALFORMED_PAYLOAD, message, encoding=encoding, reply_to=reply_to, operation=operation
        )

    if not payload.strip():
        return {}
    if encoding == "json":
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise fail("payload is neither a JSON object nor a msgpack map") from None
    else:
        try:
            body = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except Exception:  # msgpack raises many unrelated exception types on garbage
            raise fail("payload is not valid msgpack") from None
    if not isinstance(body, dict):
        raise fail(f"payload must be a {'JSON object' if encoding == 'json' else 'msgpack map'}")
    return body


def encode(obj: dict[str, Any], encoding: Encoding) -> bytes:
    if encoding == "msgpack":
        # A reply may carry text that arrived as JSON (the recent events echo other requests'
        # correlation ids): JSON can hold a lone surrogate, UTF-8 cannot, so it becomes "?".
        return cast(bytes, msgpack.packb(obj, use_bin_type=True, unicode_errors="replace"))
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def success_reply(request: Request, data: dict[str, Any]) -> bytes:
    reply: dict[str, Any] = {"ok": True, "operation": str(request.operation)}
    if request.correlation_id is not None:
        reply["correlation_id"] = request.correlation_id
    reply.update(data)
    return encode(reply, request.encoding)


def error_reply(
    error: LicensingError, *, encoding: Encoding, operation: Operation | None, correlation_id: str | int | None
) -> bytes:
    reply: dict[str, Any] = {"ok": False}
    if operation is not None:
        reply["operation"] = str(operation)
    if correlation_id is not None:
        reply["correlation_id"] = correlation_id
    reply["error"] = error.to_dict()
    return encode(reply, encoding)


# -- typed arguments: each operation's fields, checked once --------------------------------


@dataclass(frozen=True)
class ActivateOnline:
    license_key: str
    method: Literal["online"] = "online"


@dataclass(frozen=True)
class ActivateOffline:
    usage_license: str  # the armored code, as the operator pasted it
    method: Literal["offline"] = "offline"


@dataclass(frozen=True)
class ActivateFloating:
    server_url: str
    features: tuple[str, ...] | None = None  # None: the config's (or mqtt_server)
    method: Literal["floating"] = "floating"


@dataclass(frozen=True)
class ActivateOther:
    """A model this module has no schema for (a source registered beside the three): its own fields."""

    method: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class OfflineRequest:
    license_key: str


@dataclass(frozen=True)
class NoArguments:
    """reactivate, deactivate, offline_cancel and status take no fields."""


@dataclass(frozen=True)
class EventsRecent:
    since: float | None = None


Activate = ActivateOnline | ActivateOffline | ActivateFloating | ActivateOther
ACTIVATE_ARGUMENTS = (ActivateOnline, ActivateOffline, ActivateFloating, ActivateOther)
Arguments = Activate | OfflineRequest | NoArguments | EventsRecent


def arguments(operation: Operation, fields: dict[str, Any]) -> Arguments:
    """The checked arguments of one request (missing_field / invalid_field otherwise)."""
    if operation is Operation.ACTIVATE:
        method = optional_str(fields, "method", "online") or "online"
        if method == "online":
            return ActivateOnline(require_str(fields, "license_key"))
        if method == "offline":
            return ActivateOffline(require_str(fields, "usage_license", max_len=32768))
        if method == "floating":
            url = require_url(fields, "server_url")
            features = optional_str_list(fields, "features")
            return ActivateFloating(url, tuple(features) if features else None)
        return ActivateOther(method, dict(fields))
    if operation is Operation.OFFLINE_REQUEST:
        return OfflineRequest(require_str(fields, "license_key"))
    if operation is Operation.EVENTS_RECENT:
        return EventsRecent(optional_seconds(fields, "since"))
    return NoArguments()
