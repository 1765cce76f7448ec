"""The activation server's domain logic: licenses, activations, certificates. No HTTP here.

:class:`ActivationService` is used by the HTTP app (:mod:`.app`), by the ``vendor``
CLI verbs directly on the data folder, and by tests. It is one facade over three
concerns, one module each: :mod:`.licenses` (the vendor's admin work),
:mod:`.instances` (what instances ask online), :mod:`.codes` (offline and floating
request codes), :mod:`.usage` (metered usage records) and :mod:`.forwarded` (those a floating
server forwards). It talks to the database only
through :mod:`.store`; every change that counts (an activation, a freed activation) is one
transaction that first locks the license row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ...core.signing import public_key_to_text
from .._db import create_db_engine
from .._files import database_url as resolve_database_url
from .._files import load_or_create_signing_key, remember_database_url
from .._requests import MAX_CLOCK_SKEW
from .codes import OfflineCodes
from .forwarded import ForwardedUsageApi
from .instances import InstanceApi
from .licenses import LicenseAdmin
from .records import Clock, activation_to_dict, license_to_dict, system_clock
from .store import ActivationStore
from .usage import UsageApi

DEFAULT_CERTIFICATE_LIFETIME = 7 * 24 * 3600
RATE_LIMIT_FAILURES = 10
RATE_LIMIT_WINDOW = 60
RATE_LIMIT_KEY_FAILURES = 60  # refused activations of one existing key per window, from all sources
TRIAL_LIMIT_BURST = 10  # new trial instances recorded per source per rate-limit window
TRIAL_LIMIT_TOTAL = 1000  # trial records kept per source, ever (what one address can make the vendor store)
DB_FILE = "vendor.db"
KEY_NAME = "vendor"


class ActivationService(LicenseAdmin, InstanceApi, OfflineCodes, ForwardedUsageApi, UsageApi):
    """The activation server's behaviour; thread-safe (all state is in the database)."""

    def __init__(
        self,
        store: ActivationStore,
        signing_key: Ed25519PrivateKey,
        *,
        clock: Clock = system_clock,
        certificate_lifetime: int = DEFAULT_CERTIFICATE_LIFETIME,
        max_clock_skew: int = MAX_CLOCK_SKEW,
        rate_limit_failures: int = RATE_LIMIT_FAILURES,
        rate_limit_window: int = RATE_LIMIT_WINDOW,
        rate_limit_key_failures: int = RATE_LIMIT_KEY_FAILURES,
        trial_limit_burst: int = TRIAL_LIMIT_BURST,
        trial_limit_total: int = TRIAL_LIMIT_TOTAL,
        data_dir: Path | None = None,
    ) -> None:
        if certificate_lifetime <= 0:
            raise ValueError("certificate_lifetime must be positive")
        self.store = store
        self.signing_key = signing_key
        self.clock = clock
        self.certificate_lifetime = certificate_lifetime
        self.max_clock_skew = max_clock_skew
        self.rate_limit_failures = rate_limit_failures
        self.rate_limit_window = rate_limit_window
        self.rate_limit_key_failures = rate_limit_key_failures
        self.trial_limit_burst = trial_limit_burst
        self.trial_limit_total = trial_limit_total
        self.data_dir = data_dir

    @classmethod
    def open(cls, data_dir: str | Path, *, database_url: str | None = None, **options: Any) -> ActivationService:
        """Open (creating on first use) the vendor state in ``data_dir``: vendor.key/.pub, vendor.db
        (or ``database_url``, remembered in the folder), its schema brought to this code's version."""
        data_dir = Path(data_dir)
        key = load_or_create_signing_key(data_dir, KEY_NAME)
        url = resolve_database_url(data_dir, DB_FILE, database_url)
        store = ActivationStore(create_db_engine(url))
        store.migrate()
        remember_database_url(data_dir, url)  # only once it worked
        return cls(store, key, data_dir=data_dir, **options)

    def close(self) -> None:
        self.store.close()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def public_key_text(self) -> str:
        return public_key_to_text(self.signing_key)


__all__ = [
    "DB_FILE",
    "DEFAULT_CERTIFICATE_LIFETIME",
    "ActivationService",
    "activation_to_dict",
    "license_to_dict",
    "system_clock",
]
