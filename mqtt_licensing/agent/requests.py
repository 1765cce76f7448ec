"""The ``$license/*`` request path: decode, authorise, dispatch, reply (or reply with an error).

Every request is answered on its reply topic unless that topic would reach someone else than
the requester; a failure is also announced on ``$license/events``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from ..core import protocol
from ..core.errors import ErrorCode, LicensingError
from .access import Access, Role

log = logging.getLogger(__name__)

Dispatch = Callable[[protocol.Request], Awaitable[dict[str, Any]]]
Publish = Callable[[str, bytes], Awaitable[None]]


class Requests:
    def __init__(
        self, access: Access, *, dispatch: Dispatch, publish: Publish, emit: Callable[..., None], max_payload: int
    ) -> None:
        self._access = access
        self._dispatch = dispatch
        self._publish = publish
        self._emit = emit
        self._max_payload = max_payload

    async def handle(self, conn: Hashable, topic: str, payload: bytes) -> None:
        """Serve one PUBLISH to a ``$license/...`` topic; always answers, never raises."""
        access = self._access
        client = access.clients.get(conn)
        client_id = client.client_id if client else ""
        is_admin = client is not None and client.role is Role.ADMIN
        if not protocol.client_id_can_receive_replies(client_id):
            # Its reply topic would be readable by another client: answer nobody.
            log.warning("ignored %s from client id %r: not usable as a reply topic", topic, client_id)
            return
        if access.requester_gone(conn, client):
            return  # a newer connection holds this client id: its reply topic is no longer ours
        try:
            request = protocol.decode_request(topic, payload, client_id, max_payload=self._max_payload)
        except protocol.RequestError as exc:
            if not is_admin:
                exc = protocol.RequestError(
                    ErrorCode.NOT_AUTHORIZED,
                    "only admin clients may send license requests",
                    encoding=exc.encoding,
                    reply_to=exc.reply_to,
                    correlation_id=exc.correlation_id,
                    operation=exc.operation,
                )
            await self._reply_error(exc, exc.reply_to, exc.encoding, exc.operation, exc.correlation_id)
            return
        if not is_admin:
            self._emit("request_refused", client_id=client_id, operation=request.operation, reason="not_authorized")
            error = LicensingError(ErrorCode.NOT_AUTHORIZED, "only admin clients may send license requests")
            await self._reply_error(
                error, request.reply_to, request.encoding, request.operation, request.correlation_id
            )
            return
        try:
            data = await self._dispatch(request)
            if access.requester_gone(conn, client):
                return
        except LicensingError as exc:
            if access.requester_gone(conn, client):
                return
            # Also announced on $license/events, so a mosquitto_pub user watching events sees why.
            self._emit(
                "command_failed",
                operation=request.operation,
                client_id=client_id,
                correlation_id=request.correlation_id,
                error=exc.to_dict(),
            )
            await self._reply_error(exc, request.reply_to, request.encoding, request.operation, request.correlation_id)
            return
        except Exception:
            log.exception("license request %s failed", request.operation)
            if access.requester_gone(conn, client):
                return
            error = LicensingError(ErrorCode.INTERNAL_ERROR, "internal error; see the broker log")
            await self._reply_error(
                error, request.reply_to, request.encoding, request.operation, request.correlation_id
            )
            return
        await self._publish(request.reply_to, protocol.success_reply(request, data))

    async def _reply_error(
        self,
        error: LicensingError,
        reply_to: str,
        encoding: str,
        operation: str | None,
        correlation_id: str | int | None,
    ) -> None:
        reply = protocol.error_reply(error, encoding=encoding, operation=operation, correlation_id=correlation_id)
        await self._publish(reply_to, reply)
