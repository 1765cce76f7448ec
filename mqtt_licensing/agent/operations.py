"""The license operations a request asks for: activate, deactivate, offline codes, status.

One at a time under the core's lock (background work takes it too); each change is saved
before the events that announce it go out, and a refusal stays in the status until an
operation succeeds. Which source answers is :func:`~.sources.operate`'s business.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..core import protocol
from ..core.errors import ErrorCode, LicensingError
from ..core.protocol import Operation
from ..core.timefmt import iso
from .core import AgentCore
from .metrics import AgentMetrics
from .sources import operate

log = logging.getLogger(__name__)


class Operations:
    def __init__(self, core: AgentCore, metrics: AgentMetrics) -> None:
        self._core = core
        self._metrics = metrics

    async def dispatch(self, request: protocol.Request) -> dict[str, Any]:
        with self._metrics.timed(request.operation):
            return await self._dispatch(request)

    async def _dispatch(self, request: protocol.Request) -> dict[str, Any]:
        core = self._core
        if request.operation is Operation.STATUS:
            return {"status": core.status_document()}
        if request.operation is Operation.EVENTS_RECENT:
            args = protocol.arguments(request.operation, request.fields)
            assert isinstance(args, protocol.EventsRecent)
            return {"events": core.out.recent(args.since)}
        if not core.loaded:
            raise core.load_error or LicensingError(ErrorCode.INTERNAL_ERROR, "the license agent is not loaded")
        async with core.lock:
            try:
                async with core.changing():
                    data = await self._operate(request)
            except LicensingError as exc:
                # Kept in the status until an operation succeeds: a refusal (say the vendor's
                # no_activations_left) stays visible to whoever looks later, not only to the requester.
                core.last_failure = {"operation": str(request.operation), **exc.to_dict(), "at": iso(core.now())}
                core.refresh(core.now())
                raise
            core.last_failure = None
            core.refresh(core.now())
            if core.alarms.pending:
                await core.save()
        core.out.emit(
            "command",
            operation=str(request.operation),
            correlation_id=request.correlation_id,
            state=str(core.evaluation.state),
        )
        return {**data, "status": core.status_document()}

    async def _operate(self, request: protocol.Request) -> dict[str, Any]:
        core = self._core
        args = protocol.arguments(request.operation, request.fields)  # checked once, here
        outcome = await operate(core.context, request.operation, args, core.source)
        core.source = outcome.source
        if request.operation is Operation.DEACTIVATE or outcome.holds_back_auto_lease:
            core.auto.hold_back()  # kept in state.json: a restart does not undo an operator's deactivate
        elif request.operation is Operation.ACTIVATE:
            core.auto.release()  # an admin's activate clears that hold
        return dict(outcome.reply)

    async def install_usage_license_file(self) -> None:
        """At start: the config's offline usage license, when none is held or a renewal is pending.

        Verified like an operator's paste (vendor key, this instance, the pending request); a file
        that does not pass is one line and a ``last_failure``, and whatever served goes on serving."""
        core = self._core
        configured = core.settings.usage_license
        facts = core.facts()
        held = facts.certificate or facts.floating_certificate
        if configured is None or not core.loaded or (held is not None and facts.pending_offline_at is None):
            return
        async with core.lock:
            try:
                text = await asyncio.to_thread(configured.read)
                async with core.changing():
                    args = protocol.ActivateOffline(text.strip())
                    core.source = (await operate(core.context, Operation.ACTIVATE, args, core.source)).source
            except LicensingError as exc:
                log.error("%s: the usage license was not installed: %s", configured.where, exc.message)
                failure = LicensingError(exc.code, f"{configured.where}: {exc.message}")
                core.last_failure = {"operation": "activate", **failure.to_dict(), "at": iso(core.now())}
            else:
                log.info("the offline usage license from %s is installed", configured.where)
            core.refresh(core.now())


__all__ = ["Operations"]
