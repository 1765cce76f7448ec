"""The license operations a request asks for: activate, deactivate, offline codes, status.

One at a time under the agent's lock (background work takes it too); each change is saved
before the events that announce it go out, and a refusal stays in the status until an
operation succeeds. A mixin of :class:`~.agent.LicensingAgent`, like :mod:`.scheduler`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..core import protocol
from ..core.errors import ErrorCode, LicensingError
from ..core.models import LicenseModel
from ..core.state import Evaluation
from ..core.timefmt import iso
from .alarms import AlarmBoard
from .metrics import AgentMetrics
from .publisher import Publisher
from .sources import LicenseSource, SourceContext, operate


class Operations:
    # The agent's state an operation works on (set by LicensingAgent).
    metrics: AgentMetrics
    _alarms: AlarmBoard
    _auto_lease_enabled: bool
    _context: SourceContext
    _evaluation: Evaluation
    _last_failure: dict[str, Any] | None
    _load_error: LicensingError | None
    _loaded: bool
    _lock: asyncio.Lock
    _out: Publisher
    _source: LicenseSource | None

    if TYPE_CHECKING:

        def _now(self) -> int: ...
        def _refresh(self, now: int, *, force_publish: bool = False) -> None: ...
        async def _save(self) -> None: ...
        def status_document(self) -> dict[str, Any]: ...

    async def _dispatch(self, request: protocol.Request) -> dict[str, Any]:
        with self.metrics.timed(request.operation):
            return await self._dispatch_timed(request)

    async def _dispatch_timed(self, request: protocol.Request) -> dict[str, Any]:
        if request.operation == "status":
            return {"status": self.status_document()}
        if request.operation == "events_recent":
            return {"events": self._out.recent(protocol.optional_seconds(request.fields, "since"))}
        if not self._loaded:
            raise self._load_error or LicensingError(ErrorCode.INTERNAL_ERROR, "the license agent is not loaded")
        async with self._lock:
            try:
                async with self._changing():
                    data = await self._operate(request.operation, request.fields)
            except LicensingError as exc:
                # Kept in the status until an operation succeeds: a refusal (say the vendor's
                # no_activations_left) stays visible to whoever looks later, not only to the requester.
                self._last_failure = {"operation": request.operation, **exc.to_dict(), "at": iso(self._now())}
                self._refresh(self._now())
                raise
            self._last_failure = None
            self._refresh(self._now())
            if self._alarms.pending:
                await self._save()
        self._out.emit(
            "command",
            operation=request.operation,
            correlation_id=request.correlation_id,
            state=str(self._evaluation.state),
        )
        return {**data, "status": self.status_document()}

    async def _operate(self, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
        current = self._source
        self._source, data = await operate(self._context, operation, fields, current)
        if operation == "deactivate" and current is not None and current.model is LicenseModel.FLOATING:
            self._auto_lease_enabled = False  # until a restart or an explicit activate
        return data

    @asynccontextmanager
    async def _changing(self) -> AsyncIterator[None]:
        """Wrap one operation on the source: drop a source the server disowned, save, then announce."""
        with self._out.holding() as events:
            try:
                yield
            finally:
                if self._source is not None and self._source.gone:
                    self._source = None
                await self._save()
                self._out.release(events)

    # -- evaluation, status, persistence -------------------------------------------------------
