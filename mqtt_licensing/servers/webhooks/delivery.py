"""The background sender of the webhook outbox: supervised, never on a request's path."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import httpx

from ..defaults import WEBHOOK_TIMEOUT
from .signing import headers
from .store import Due, Webhooks

log = logging.getLogger(__name__)

SEND_TIMEOUT = WEBHOOK_TIMEOUT  # a receiver that never answers costs a background task this much, nothing else


class Deliverer:
    """Sends due outbox rows every ``interval`` seconds; one failing iteration is logged and the
    next one runs (a receiver, the network or the database may fail; the loop does not end)."""

    def __init__(
        self,
        webhooks: Webhooks,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        self.webhooks = webhooks
        self.interval = interval
        self.clock = clock
        self.transport = transport
        self.send_timeout = send_timeout
        # A claim outlives the attempt it covers (connect + answer within the timeout, then the
        # record): a live sender is never overtaken, a killed one's rows are sent again soon.
        self.claim_seconds = max(3, math.ceil(3 * send_timeout))

    async def run(self) -> None:
        async with self.client() as client:
            while True:
                try:
                    await self.step(client)
                except Exception:
                    log.exception("webhook delivery failed; retrying")
                await asyncio.sleep(self.interval)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, timeout=self.send_timeout)

    async def step(self, client: httpx.AsyncClient) -> int:
        """One round: claim what is due, send it all at once, record each outcome. Returns the count."""
        due = await asyncio.to_thread(self.webhooks.claim_due, int(self.clock()), 20, self.claim_seconds)
        if due:
            await asyncio.gather(*(self._send(client, item) for item in due))
        return len(due)

    async def _send(self, client: httpx.AsyncClient, due: Due) -> None:
        now = int(self.clock())
        status: int | None = None
        error: str | None = None
        try:
            response = await client.post(
                due.url, content=due.payload, headers=headers(due.secret, due.id, now, due.payload)
            )
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        if error:
            log.info("webhook %s to %s: %s (attempt %d)", due.id, due.url, error, due.attempts + 1)
        await asyncio.to_thread(self.webhooks.record, due, int(self.clock()), status=status, error=error)
