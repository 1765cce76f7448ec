"""The ``$license/*`` request path: decode, authorise, dispatch, reply (or reply with an error).

Every request is answered on its reply topic unless that topic would reach someone else than
the requester; a failure is also announced on ``$license/events``. Admins may send every
request, readers ``status`` and ``events_recent``. Floods: a non-admin connection gets a small burst,
then its requests are dropped unanswered (:mod:`.flood`); its ``request_refused`` events are
coalesced to one per client per minute with a count; each admin's commands wait in their own
queue (one at a time per admin, so admins take turns on the license lock, and at most
``MAX_QUEUED`` wait); a ``status`` request never waits behind commands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any

from ..clients.http import DEFAULT_TIMEOUT, calling
from ..core import protocol
from ..core.errors import ErrorCode, LicensingError
from .access import Access, Client, Role
from .flood import Buckets, Coalescer

log = logging.getLogger(__name__)

Dispatch = Callable[[protocol.Request], Awaitable[dict[str, Any]]]
Publish = Callable[[str, bytes], Awaitable[None]]

MAX_QUEUED = 16  # commands one admin may have waiting; more are answered rate_limited


class Requests:
    def __init__(
        self,
        access: Access,
        *,
        dispatch: Dispatch,
        publish: Publish,
        emit: Callable[..., None],
        max_payload: int,
        clock: Callable[[], float] = time.monotonic,
        server_timeout: float = DEFAULT_TIMEOUT,
        vendor_url: str | None = None,
    ) -> None:
        self._access = access
        self._dispatch = dispatch
        self._publish = publish
        self._emit = emit
        self._max_payload = max_payload
        self._clock = clock
        self._buckets = Buckets(burst=access.config.request_burst)
        self._refusals = Coalescer()
        self._queues: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # admin -> (its turn, [waiting])
        self._server_timeout = server_timeout
        self._vendor_url = vendor_url

    async def handle(self, conn: Hashable, topic: str, payload: bytes) -> None:
        """Serve one PUBLISH to a ``$license/...`` topic; answers unless flooded, never raises."""
        access = self._access
        client = access.clients.get(conn)
        client_id = client.client_id if client else ""
        is_admin = client is not None and client.role is Role.ADMIN
        if not is_admin and not self._buckets.take(conn, self._clock()):
            log.debug("dropped %s from client id %r: request rate limit", topic, client_id)
            return
        if not protocol.client_id_can_receive_replies(client_id):
            # Its reply topic would be readable by another client: answer nobody.
            log.warning("ignored %s from client id %r: not usable as a reply topic", topic, client_id)
            return
        if access.requester_gone(conn, client):
            return  # a newer connection holds this client id: its reply topic is no longer ours
        try:
            request = protocol.decode_request(topic, payload, client_id, max_payload=self._max_payload)
        except protocol.RequestError as exc:
            if not is_admin and not (
                exc.operation in protocol.READER_OPERATIONS and client is not None and client.may_read_status
            ):
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
        may_read = client is not None and client.may_read_status
        if not is_admin and not (request.operation in protocol.READER_OPERATIONS and may_read):
            count = self._refusals.hit(client_id, self._clock())
            if count is not None:  # one event per client per minute, with how many it stands for
                self._emit(
                    "request_refused",
                    client_id=client_id,
                    operation=str(request.operation),
                    reason="not_authorized",
                    count=count,
                )
            message = "only admin clients may send license requests" + (
                "" if may_read else " (readers and admins may ask for status and recent events)"
            )
            error = LicensingError(ErrorCode.NOT_AUTHORIZED, message)
            await self._reply_error(
                error, request.reply_to, request.encoding, request.operation, request.correlation_id
            )
            return
        try:
            data = await self._run(client, client_id, request)
            if access.requester_gone(conn, client):
                return
        except LicensingError as exc:
            if access.requester_gone(conn, client):
                return
            # Also announced on $license/events, so a mosquitto_pub user watching events sees why.
            self._emit(
                "command_failed",
                operation=str(request.operation),
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

    async def _run(self, client: Client | None, client_id: str, request: protocol.Request) -> dict[str, Any]:
        """Dispatch in this admin's turn, announcing each server the request waits for."""
        progress = calling.set(self._announcer(request, client_id))
        try:
            async with self._turn(client, request.operation):
                return await self._dispatch(request)
        finally:
            calling.reset(progress)

    @asynccontextmanager
    async def _turn(self, client: Client | None, operation: protocol.Operation) -> AsyncIterator[None]:
        """Wait for this admin's previous commands; ``status`` never waits."""
        if operation in protocol.READER_OPERATIONS or client is None:
            yield
            return
        admin = client.username or client.client_id
        lock, waiting = self._queues.setdefault(admin, (asyncio.Lock(), [0]))
        if waiting[0] >= MAX_QUEUED:
            raise LicensingError(ErrorCode.RATE_LIMITED, f"{MAX_QUEUED} commands from {admin!r} are already waiting")
        waiting[0] += 1
        try:
            async with lock:
                yield
        finally:
            waiting[0] -= 1
            if not waiting[0]:
                self._queues.pop(admin, None)

    def _announcer(self, request: protocol.Request, client_id: str) -> Callable[[str], None]:
        """Announce each server a request waits for, once, so that the operator's CLI can say that a
        slow answer is a slow server (and wait as long as the agent does) rather than a dead agent."""
        announced: set[str] = set()

        def announce(url: str) -> None:
            if url in announced:
                return
            announced.add(url)
            kind = "vendor" if self._vendor_url and url == self._vendor_url.rstrip("/") else "license server"
            self._emit(
                "waiting_for_server",
                operation=str(request.operation),
                correlation_id=request.correlation_id,
                client_id=client_id,
                server=url,
                timeout=self._server_timeout,
                message=f"waiting for the {kind} at {url} (up to {self._server_timeout:g} s)",
            )

        return announce

    async def _reply_error(
        self,
        error: LicensingError,
        reply_to: str,
        encoding: protocol.Encoding,
        operation: protocol.Operation | None,
        correlation_id: str | int | None,
    ) -> None:
        reply = protocol.error_reply(error, encoding=encoding, operation=operation, correlation_id=correlation_id)
        await self._publish(reply_to, reply)
