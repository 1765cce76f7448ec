"""The activation server's domain logic: licenses, activations, certificates. No HTTP here.

:class:`ActivationService` is used by the HTTP app (:mod:`.app`), by the ``vendor``
CLI verbs directly on the data folder, and by tests. It is a facade over one object per
concern, one module each, all built from one frozen :class:`.records.ServiceContext`:
:mod:`.licenses` (the vendor's admin work), :mod:`.catalogue` (its product line),
:mod:`.instances` (what instances ask online),
:mod:`.codes` (offline and floating request codes), :mod:`.usage` (metered usage records) and
:mod:`.forwarded` (those a floating server forwards). It talks to the database only
through :mod:`.store`; every change that counts (an activation, a freed activation) is one
transaction that first locks the license row.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ...core.keys import key_digest
from ...core.listing import ActivationFilter
from ...core.signing import public_key_to_text
from .._db import create_db_engine
from .._files import database_url as resolve_database_url
from .._files import load_or_create_signing_key, remember_database_url
from .._jobs import Job, JobBatcher
from .._requests import MAX_CLOCK_SKEW
from . import keys
from .catalogue import CatalogueAdmin
from .codes import OfflineCodes
from .forwarded import ForwardedUsage
from .heartbeats import Heartbeats
from .instances import Instances
from .licenses import LicenseAdmin
from .listing import find_activations
from .records import Clock, ServiceContext, activation_to_dict, license_to_dict, system_clock
from .results import ActivationResult, FloatingIssue, OfflineActivation, OfflineDeactivation
from .store import ActivationStore
from .usage import Usage

DEFAULT_CERTIFICATE_LIFETIME = 7 * 24 * 3600
RATE_LIMIT_FAILURES = 10
RATE_LIMIT_WINDOW = 60
RATE_LIMIT_KEY_FAILURES = 60  # refused activations of one existing key per window, from all sources
TRIAL_LIMIT_BURST = 10  # new trial instances recorded per source per rate-limit window
TRIAL_LIMIT_TOTAL = 1000  # trial records kept per source, ever (what one address can make the vendor store)
DB_FILE = "vendor.db"
KEY_NAME = "vendor"


class ActivationService:
    """The activation server's behaviour; thread-safe (all state is in the database).

    A facade: it builds one frozen :class:`.records.ServiceContext` and the concern objects over
    it (:attr:`admin`, :attr:`catalogue`, :attr:`instances`, :attr:`usage`, :attr:`forwarded`, :attr:`codes`), and its
    methods delegate to them, so callers keep one object. Every method is synchronous and blocks
    on the database: call it through ``run_in_threadpool`` / ``to_thread`` from a loop."""

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
        self._assemble(
            ServiceContext(
                store=store,
                signing_key=signing_key,
                clock=clock,
                certificate_lifetime=certificate_lifetime,
                max_clock_skew=max_clock_skew,
                rate_limit_failures=rate_limit_failures,
                rate_limit_window=rate_limit_window,
                rate_limit_key_failures=rate_limit_key_failures,
                trial_limit_burst=trial_limit_burst,
                trial_limit_total=trial_limit_total,
                data_dir=data_dir,
                key_documents=tuple(keys.documents(data_dir)) if data_dir is not None else (),
            )
        )
        # Check-ins and heartbeats batched on one thread (the route awaits them there), on SQLite: on PostgreSQL
        # a batch would hold several activations' (and licenses') rows at once, which two replicas
        # could lock in opposite orders, so each request keeps a transaction of its own on a worker thread.
        self.batcher = JobBatcher(store, name="instance") if store.group.batching else None

    def _assemble(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.admin = LicenseAdmin(ctx)
        self.catalogue = CatalogueAdmin(ctx.store, ctx.clock)
        self.instances = Instances(ctx)
        self.heartbeats = Heartbeats(ctx, self.instances)
        self.usage = Usage(ctx)
        self.forwarded = ForwardedUsage(ctx, self.usage)
        self.codes = OfflineCodes(ctx, self.usage, self.forwarded)

    def reconfigure(self, **settings: Any) -> None:
        """Rebuild the concerns over a context with other settings (e.g. a test's lower limit)."""
        self._assemble(replace(self.ctx, **settings))

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
        if self.batcher is not None:
            self.batcher.close()
        self.ctx.store.close()

    # -- what callers read -------------------------------------------------------------
    @property
    def store(self) -> ActivationStore:
        return self.ctx.store

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return self.ctx.signing_key

    @property
    def data_dir(self) -> Path | None:
        return self.ctx.data_dir

    def clock(self) -> int:
        return self.ctx.clock()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.ctx.signing_key.public_key()

    @property
    def public_key_text(self) -> str:
        return public_key_to_text(self.ctx.signing_key)

    def key_documents(self) -> list[bytes]:
        """The rotation and retirement documents of the vendor's keys (:mod:`.keys`), as served."""
        return list(self.ctx.key_documents)

    # -- the vendor's admin work (:mod:`.licenses`) ---------------------------------------
    def issue_license(self, **terms: Any) -> tuple[dict[str, Any], str]:
        return self.admin.issue_license(**terms)

    def list_licenses(self) -> list[dict[str, Any]]:
        return self.admin.list_licenses()

    def get_license(self, license_id: str) -> dict[str, Any]:
        return self.admin.get_license(license_id)

    def update_license(self, license_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self.admin.update_license(license_id, changes)

    def license_for_key(self, license_key: Any) -> dict[str, Any]:
        """The license of a key (a malformed key is BAD_REQUEST, an unknown one KEY_NOT_FOUND)."""
        return self.admin.license_by_key_digest(key_digest(license_key))

    def license_by_key_digest(self, digest: str) -> dict[str, Any]:
        return self.admin.license_by_key_digest(digest)

    def support_ending(self, start: int, end: int) -> list[tuple[str, int]]:
        return self.admin.support_ending(start, end)

    def set_status(self, license_id: str, status: str) -> dict[str, Any]:
        return self.admin.set_status(license_id, status)

    def list_activations(self, license_id: str | None = None, *, include_freed: bool = False) -> list[dict[str, Any]]:
        return self.admin.list_activations(license_id, include_freed=include_freed)

    def find_activations(self, wanted: ActivationFilter) -> dict[str, Any]:
        """The filtered, paged list (:mod:`.listing`): ``vendor activations`` and the admin API."""
        return find_activations(self.ctx, wanted)

    def free_activation(self, activation_id: str, *, by: Literal["vendor", "customer"] = "vendor") -> dict[str, Any]:
        return self.admin.free_activation(activation_id, by=by)

    # -- what instances ask (:mod:`.instances`) --------------------------------------------
    def activate(self, license_key: Any, request: bytes, client: str = "local") -> ActivationResult:
        return self.instances.activate(license_key, request, client)

    def check_in(self, request: bytes) -> bytes:
        return self.instances.check_in(request)

    def check_in_job(self, request: bytes) -> Job[Any, bytes]:
        return self.instances.check_in_job(request)

    def heartbeat(self, request: bytes) -> bytes:
        return self.heartbeats.heartbeat(request)

    def heartbeat_job(self, request: bytes) -> Job[Any, bytes]:
        return self.heartbeats.heartbeat_job(request)

    def revive(self, request: bytes) -> bytes:
        return self.instances.revive(request)

    def release_silent(self) -> list[str]:
        """One pass of the release duty (the app runs it every :meth:`release_pass` seconds)."""
        return self.heartbeats.release_silent()

    def release_pass(self) -> float:
        """Seconds until the next pass, as the last pass found it (no I/O)."""
        return self.heartbeats.next_pass

    def deactivate(self, request: bytes) -> None:
        self.instances.deactivate(request)

    def record_trial(self, request: bytes, client: str = "local") -> bytes:
        return self.instances.record_trial(request, client)

    def floating_activate(self, license_key: Any, request: bytes, client: str = "local") -> ActivationResult:
        return self.instances.floating_activate(license_key, request, client)

    def floating_check_in(self, request: bytes) -> bytes:
        return self.instances.floating_check_in(request)

    # -- codes (:mod:`.codes`) and usage (:mod:`.usage`, :mod:`.forwarded`) -----------------
    def offline_activate(self, request_code: Any) -> OfflineActivation:
        return self.codes.offline_activate(request_code)

    def offline_deactivate(self, code: Any) -> OfflineDeactivation:
        return self.codes.offline_deactivate(code)

    def floating_issue(self, request_code: Any) -> FloatingIssue:
        return self.codes.floating_issue(request_code)

    def report_usage(self, request: bytes, records: list[bytes]) -> bytes:
        return self.usage.report_usage(request, records)

    def usage_by_day(self, license_id: str, first: str | None = None, last: str | None = None) -> dict[str, Any]:
        return self.usage.usage_by_day(license_id, first, last)

    def forward_usage(self, request: bytes) -> bytes:
        return self.forwarded.forward_usage(request)


__all__ = [
    "DB_FILE",
    "DEFAULT_CERTIFICATE_LIFETIME",
    "ActivationService",
    "activation_to_dict",
    "license_to_dict",
    "system_clock",
]
