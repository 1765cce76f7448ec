"""The config's standing order to hold a license with no operator action (``floating_server_url``).

Which model answers it is the sources' business (:func:`~.sources.auto_factory`); this object only
keeps when it is wanted, when it was last tried and why it failed. An operator's deactivate holds
it back until the agent restarts.
"""

from __future__ import annotations

from collections.abc import Callable

from .sources import AutoFactory, LicenseSource


class AutoLease:
    def __init__(self, factory: AutoFactory | None, *, retry_interval: float, now: Callable[[], int]) -> None:
        self._factory = factory
        self._retry = retry_interval
        self._now = now
        self.enabled = True
        self.last_attempt = 0.0
        self.error: str | None = None  # the code of the last failure (no_seat), shown as an alarm

    def wanted(self, source: LicenseSource | None) -> bool:
        """Nothing is held (or the source waits for nothing) and the config asks for a license."""
        return self._factory is not None and self.enabled and (source is None or source.vacant)

    def next_due(self, source: LicenseSource | None) -> float | None:
        return self.last_attempt + self._retry if self.wanted(source) else None

    def hold_back(self) -> None:
        self.enabled = False

    async def obtain(self) -> LicenseSource:
        assert self._factory is not None
        self.last_attempt = self._now()
        return await self._factory()


__all__ = ["AutoLease"]
