"""What travels on the ``$license`` topics, seen from a client: topic names and payloads.

Pure functions (no paho, no sockets) so the decoding rules are tested on sample
payloads and shared by every client that reads these topics.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

from ..core.errors import ErrorCode, LicensingError
from ..core.protocol import OPERATIONS

#: operation name -> request topic, derived from the one contract in core.protocol
TOPICS: dict[str, str] = {operation: topic for topic, operation in OPERATIONS.items()}


def operation_topic(operation: str) -> str:
    """Topic for an operation name; ``offline-request`` and ``offline/request`` are accepted too."""
    name = operation.strip().replace("-", "_").replace("/", "_")
    try:
        return TOPICS[name]
    except KeyError:
        raise LicensingError(
            ErrorCode.UNKNOWN_OPERATION, f"{operation!r} is not a license operation (use one of: {', '.join(TOPICS)})"
        ) from None


def encode_request(fields: dict[str, Any] | None, correlation_id: str, reply_to: str) -> bytes:
    body: dict[str, Any] = dict(fields or {})
    body["correlation_id"] = correlation_id
    body["reply_to"] = reply_to
    return json.dumps(body, separators=(",", ":")).encode()


def decode_payload(payload: bytes) -> Any:
    """Decode a JSON or msgpack payload; raises ``bad_response`` for anything else."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        pass
    try:
        return msgpack.unpackb(payload, raw=False)
    except Exception:  # msgpack raises many unrelated types on garbage
        raise LicensingError(
            ErrorCode.BAD_RESPONSE, "a message on a $license topic is neither JSON nor msgpack"
        ) from None


def error_from_reply(reply: Any) -> LicensingError:
    """The :class:`LicensingError` an ``{"ok": false, "error": {...}}`` reply stands for."""
    error = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(error, dict):
        return LicensingError(
            ErrorCode.BAD_RESPONSE, f"the agent answered without ok=true and without an error: {reply!r:.200}"
        )
    message = str(error.get("message", "")) or "(no message)"
    try:
        code = ErrorCode(str(error.get("code")))
    except ValueError:
        return LicensingError(
            ErrorCode.BAD_RESPONSE, f"the agent answered with unknown error code {error.get('code')!r}: {message}"
        )
    return LicensingError(code, message)


def status_document(message: Any) -> dict[str, Any] | None:
    """The status document in a ``$license/status`` message (bare, or wrapped as ``{"status": {...}}``)."""
    if not isinstance(message, dict):
        return None
    inner = message.get("status")
    if "state" not in message and isinstance(inner, dict):
        return inner
    return message


def is_progress_for(event: Any, correlation_id: str) -> bool:
    """Whether an ``$license/events`` message tells that the agent waits on a server for this request."""
    return (
        isinstance(event, dict)
        and event.get("type") == "waiting_for_server"
        and event.get("correlation_id") == correlation_id
    )
