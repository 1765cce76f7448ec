"""The config's standing order to hold a license with no operator action.

``license_key`` (online) or ``floating_server_url``: which model answers it is the sources'
business (:func:`~.sources.auto_factory`). This object keeps what the agent must remember about
the order across restarts (``state.json``'s ``from_config``):

* ``order``: a digest of the order as last seen, so a *changed* key is told from a restart;
* ``held_back_at``: an operator's deactivate, which the next restart must not undo. An admin's
  activate or a changed order clears it;
* ``frees``: activations a changed key replaced, still to be freed at the vendor (retried in the
  background while it is away, shown in status).

A changed key replaces an online license of another key (the new one is activated first, so
the broker serves throughout; the old one is freed after).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import LicensingError
from ..core.keys import key_digest
from ..core.models import LicenseModel
from ..core.timefmt import iso
from .config import AgentSettings
from .sources import AutoFactory, LicenseSource

HELD_BACK = (
    "deactivated by an operator; the configured {what} is not used until an admin activates or "
    "the {what} in the config changes"
)


@dataclass
class PendingFree:
    """An online activation a changed key replaced, to be freed at the vendor."""

    activation_id: str
    key: str  # its mask
    since: int
    last_error: str | None = None
    last_attempt: float = 0.0  # this run only: a restart tries again at once

    def to_json(self) -> dict[str, Any]:
        return {
            "activation_id": self.activation_id,
            "key": self.key,
            "since": self.since,
            "last_error": self.last_error,
        }


def standing_order(settings: AgentSettings) -> tuple[str | None, str]:
    """A digest naming the config's order (never the key itself), and what it is called in status."""
    if settings.license_key is not None:
        return key_digest(settings.license_key.key), "key"
    if settings.floating_servers:
        joined = "\n".join(sorted(settings.floating_servers))
        return hashlib.sha256(joined.encode()).hexdigest(), "floating server"
    return None, "license"


class AutoLease:
    def __init__(
        self,
        factory: AutoFactory | None,
        *,
        retry_interval: float,
        now: Callable[[], int],
        settings: AgentSettings | None = None,
    ) -> None:
        self._factory = factory
        self._retry = retry_interval
        self._now = now
        self._settings = settings
        self.order, self._what = standing_order(settings) if settings is not None else (None, "license")
        self.held_back_at: int | None = None
        self.replacing = False  # the key changed since the last run: a license of the old key gives way
        self._stored_order: str | None = None  # the order on record, until the changed one is applied
        self.frees: list[PendingFree] = []
        self.last_attempt = 0.0
        self.error: str | None = None  # the code of the last failure (no_seat), shown as an alarm
        self.last_error: dict[str, str] | None = None  # the last failure itself, in status

    # -- what state.json keeps -----------------------------------------------------------------

    def restore(self, data: dict[str, Any] | None) -> None:
        """Read ``from_config``; a changed order clears an operator's hold and replaces the old key's license."""
        data = data or {}
        stored = data.get("order")
        self._stored_order = stored if isinstance(stored, str) else None
        held = data.get("held_back_at")
        self.held_back_at = held if isinstance(held, int) else None
        for item in data.get("frees") or []:
            try:
                self.frees.append(
                    PendingFree(
                        str(item["activation_id"]), str(item["key"]), int(item["since"]), item.get("last_error")
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue  # an unreadable entry: nothing to free that we could name
        if isinstance(stored, str) and self.order is not None and stored != self.order:
            self.held_back_at = None
            self.replacing = True
        # No order on record (a file from before version 4): a license of another key held now may
        # be an operator's, so it is kept; the order is recorded from this run on.

    def to_json(self) -> dict[str, Any] | None:
        if self.order is None and not self.frees and self.held_back_at is None:
            return None
        # While a changed key is not applied yet, the old order stays on record: a restart meanwhile
        # must still see the change (and replace the old key's license then).
        order = self._stored_order if self.replacing else self.order
        return {"order": order, "held_back_at": self.held_back_at, "frees": [f.to_json() for f in self.frees]}

    # -- the standing order --------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.held_back_at is None

    def replaces(self, source: LicenseSource | None) -> bool:
        """The held license is an online one of another key than the (changed) configured one."""
        configured = self._settings.license_key if self._settings is not None else None
        if not self.replacing or configured is None or source is None:
            return False
        cert = source.facts().certificate
        return cert is not None and cert.model == LicenseModel.ONLINE and cert.key_mask != configured.mask

    def wanted(self, source: LicenseSource | None) -> bool:
        """Nothing is held (or the source waits for nothing, or holds the old key) and the config asks."""
        if self._factory is None or not self.enabled:
            return False
        return source is None or source.vacant or self.replaces(source)

    def next_due(self, source: LicenseSource | None) -> float | None:
        return self.last_attempt + self._retry if self.wanted(source) else None

    def hold_back(self) -> None:
        """An operator's deactivate: persisted, so the next restart does not undo it."""
        if self._factory is not None:
            self.held_back_at = self._now()

    def release(self) -> None:
        """An admin's activate: the config's order applies again once nothing is held."""
        self.held_back_at = None

    async def obtain(self) -> LicenseSource:
        assert self._factory is not None
        self.last_attempt = self._now()
        try:
            source = await self._factory()
        except LicensingError as exc:
            self.last_error = exc.to_dict()
            raise
        self.last_error = None
        self.replacing = False
        return source

    # -- old activations to free ---------------------------------------------------------------

    def replaced(self, old: LicenseSource | None) -> None:
        cert = old.facts().certificate if old is not None else None
        if cert is not None:
            self.frees.append(PendingFree(cert.activation_id, cert.key_mask, self._now()))

    def frees_due(self, now: int) -> list[PendingFree]:
        return [f for f in self.frees if now >= f.last_attempt + self._retry]

    def next_free_due(self) -> float | None:
        return min((f.last_attempt + self._retry for f in self.frees), default=None)

    def status(self) -> dict[str, Any] | None:
        """The ``configured`` status section: null when the config asks for no license."""
        if self.order is None and not self.frees:
            return None
        configured = self._settings.license_key if self._settings is not None else None
        return {
            "key": configured.mask if configured is not None else None,
            "origin": configured.origin if configured is not None else ("config" if self.order else None),
            "held_back": HELD_BACK.format(what=self._what) if self.held_back_at is not None else None,
            "held_back_at": iso(self.held_back_at),
            "last_error": self.last_error,
            "frees_pending": [{**f.to_json(), "since": iso(f.since)} for f in self.frees],
        }


__all__ = ["HELD_BACK", "AutoLease", "PendingFree", "standing_order"]
