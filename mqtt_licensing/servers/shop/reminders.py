"""Support-renewal reminders: ``reminders.days_before`` days before a sold license's support
ends, once per end date, to the purchase address (a later end date, after a renewal, gets its own)."""

from __future__ import annotations

from ...core.errors import LicensingError
from ..activation.service import ActivationService
from . import messages
from .config import ShopConfig
from .mail import Mailer
from .store import ShopStore


class Reminders:
    def __init__(self, service: ActivationService, store: ShopStore, config: ShopConfig, mailer: Mailer) -> None:
        self.service, self.store, self.config, self.mailer = service, store, config, mailer

    def send_reminders(self) -> int:
        now = self.service.clock()
        ending = self.service.support_ending(now, now + self.config.reminder_days * 86400)
        with self.store.transaction() as tx:
            addresses = tx.contacts_of([license_id for license_id, _end in ending])
            due = [
                (license_id, addresses[license_id], end)
                for license_id, end in ending
                if license_id in addresses and not tx.reminded(license_id, end)
            ]
        sent = 0
        for license_id, email, support_until in due:
            with self.store.transaction() as tx:
                if not tx.claim_reminder(license_id, support_until, now):
                    continue  # sent by another pass meanwhile
            subject, body = messages.reminder(license_id, support_until, self.config.base_url)
            try:
                self.mailer.send(email, subject, body)
            except LicensingError:
                with self.store.transaction() as tx:
                    tx.unclaim_reminder(license_id, support_until)  # try again on a later pass
                raise
            sent += 1
        return sent


__all__ = ["Reminders"]
