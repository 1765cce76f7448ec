"""Signed webhooks from both servers: endpoints, a durable outbox, and its delivery loop.

A server records an event with :func:`emit` inside the same transaction as the change it
announces (so an event exists exactly when its change does), one outbox row per endpoint
that wants it. :class:`Deliverer` sends due rows in the background, signed the Standard
Webhooks way (:mod:`.signing`), retrying with backoff for a day under the same
``webhook-id``; a slow or failing receiver never holds a request. The tables have their own
schema and version table (``alembic_version_webhooks``) in each server's database.
"""

from ..defaults import WEBHOOK_EVENTS as EVENT_TYPES
from .delivery import Deliverer
from .store import Webhooks, emit

__all__ = ["EVENT_TYPES", "Deliverer", "Webhooks", "emit"]
