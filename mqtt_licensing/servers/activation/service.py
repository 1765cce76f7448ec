"""The vendor's domain logic: licenses, activations, certificates. No HTTP here.

:class:`ActivationService` is used by the HTTP app (:mod:`.app`), by the ``vendor``
CLI verbs directly on the data folder, and by tests. It talks to the database only
through :mod:`.store`; every change that counts (an activation, a freed activation)
is one transaction that first locks the license row.

Who is who:

* first contact (activate, floating_activate, offline_request, floating_request)
  is verified against the public key the request carries - it *becomes* the key
  on record for the new activation;
* everything later (check_in, deactivate, floating_check_in, offline_deactivation)
  is verified against the key on record, so only the instance holding the
  private key can refresh or free its activation.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ...core import labels
from ...core.codes import armor, unarmor
from ...core.documents import (
    MODELS,
    VERDICT_CODES,
    ActivationCertificate,
    FloatingCertificate,
    InstanceRequest,
    Verdict,
    open_instance_request,
)
from ...core.errors import ErrorCode, LicensingError
from ...core.features import validate_features
from ...core.keys import format_key, key_digest, mask_key
from ...core.signing import b64, load_public_key, parse_envelope, public_key_to_text
from ..common import create_db_engine, load_or_create_signing_key, sqlite_url
from .store import ActivationRecord, LicenseRecord, Tx, VendorStore

log = logging.getLogger(__name__)

DEFAULT_CERTIFICATE_LIFETIME = 7 * 24 * 3600
MAX_CLOCK_SKEW = 600  # online requests made further than this from server time are refused
RATE_LIMIT_FAILURES = 10
RATE_LIMIT_WINDOW = 60

STATUSES = ("active", "suspended", "revoked")
FREED_REASONS = ("deactivated", "freed_by_vendor", "offline_deactivation")
DB_FILE = "vendor.db"
KEY_NAME = "vendor"

Clock = Callable[[], int]

_LICENSE_FIELDS = ("features", "model", "max_activations", "seats", "expires_at", "support_until", "max_connections")
_UPDATE_FIELDS = (
    "add_features",
    "remove_features",
    "expires_at",
    "support_until",
    "max_activations",
    "max_connections",
    "seats",
    "status",
)


def system_clock() -> int:
    return int(time.time())


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def format_time(ts: int | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bad(message: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, message)


def _opt_int(name: str, value: Any, *, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer or null")
    if value < minimum:
        raise _bad(f"{name} must be at least {minimum}")
    if value >= 2**62:
        raise _bad(f"{name} is too large")
    return value


def _features(value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        raise _bad("features must be a list of feature names")
    features = validate_features(value)
    if not features and not allow_empty:
        raise _bad("a license needs at least one feature")
    return features


def license_to_dict(lic: LicenseRecord, activations_used: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": lic.id,
        "key_mask": lic.key_mask,
        "model": lic.model,
        "features": list(lic.features),
        "max_activations": lic.max_activations,
        "seats": lic.seats,
        "expires_at": lic.expires_at,
        "support_until": lic.support_until,
        "max_connections": lic.max_connections,
        "status": lic.status,
        "created_at": lic.created_at,
        "updated_at": lic.updated_at,
    }
    if activations_used is not None:
        out["activations_used"] = activations_used
    return out


def activation_to_dict(act: ActivationRecord) -> dict[str, Any]:
    return {
        "id": act.id,
        "license_id": act.license_id,
        "instance_fingerprint": act.instance_fingerprint,
        "public_key": b64(act.public_key),
        "model": act.model,
        "active": act.active,
        "created_at": act.created_at,
        "last_check_in_at": act.last_check_in_at,
        "request_nonce": act.request_nonce,
        "freed_at": act.freed_at,
        "freed_reason": act.freed_reason,
    }


_WRONG_MODEL_HINT = {
    "online": "it is activated online with its key ($license/activate, method online)",
    "offline": "generate a usage request code ($license/offline/request) and have the vendor turn it "
    "into a usage license (vendor offline-activate)",
    "floating": "it provisions a floating license server (mqtt-licensing floating activate), "
    "from which brokers lease seats",
}


class ActivationService:
    """The activation server's behaviour; thread-safe (all state is in the database)."""

    def __init__(
        self,
        store: VendorStore,
        signing_key: Ed25519PrivateKey,
        *,
        clock: Clock = system_clock,
        certificate_lifetime: int = DEFAULT_CERTIFICATE_LIFETIME,
        max_clock_skew: int = MAX_CLOCK_SKEW,
        rate_limit_failures: int = RATE_LIMIT_FAILURES,
        rate_limit_window: int = RATE_LIMIT_WINDOW,
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
        self.data_dir = data_dir

    @classmethod
    def open(cls, data_dir: str | Path, *, database_url: str | None = None, **options: Any) -> ActivationService:
        """Open (creating on first use) the vendor state in ``data_dir``: vendor.key/.pub, vendor.db."""
        data_dir = Path(data_dir)
        key = load_or_create_signing_key(data_dir, KEY_NAME)
        store = VendorStore(create_db_engine(database_url or sqlite_url(data_dir, DB_FILE)))
        store.create_schema()
        return cls(store, key, data_dir=data_dir, **options)

    def close(self) -> None:
        self.store.close()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def public_key_text(self) -> str:
        return public_key_to_text(self.signing_key)

    # == admin: licenses =======================================================

    def issue_license(
        self,
        *,
        features: Any,
        model: Any = "online",
        max_activations: Any = 1,
        seats: Any = None,
        expires_at: Any = None,
        support_until: Any = None,
        max_connections: Any = None,
    ) -> tuple[dict[str, Any], str]:
        """Create a license; returns (its record, the key). The key is never stored or shown again."""
        if model not in MODELS:
            raise _bad(f"model must be one of {', '.join(MODELS)}")
        max_activations = _opt_int("max_activations", 1 if max_activations is None else max_activations, minimum=1)
        seats = _opt_int("seats", seats, minimum=1)
        if model == "floating" and seats is None:
            raise _bad("a floating license needs a number of seats")
        if model != "floating" and seats is not None:
            raise _bad("seats only apply to floating licenses")
        now = self.clock()
        key = format_key(secrets.token_bytes(15))
        record = LicenseRecord(
            id=new_id("lic"),
            key_digest=key_digest(key),
            key_mask=mask_key(key),
            model=model,
            features=_features(features),
            max_activations=max_activations or 1,
            seats=seats,
            expires_at=_opt_int("expires_at", expires_at, minimum=0),
            support_until=_opt_int("support_until", support_until, minimum=0),
            max_connections=_opt_int("max_connections", max_connections, minimum=0),
            status="active",
            created_at=now,
            updated_at=now,
        )
        with self.store.transaction() as tx:
            tx.insert_license(record)
        log.info("issued license %s (%s, %s)", record.id, model, ",".join(record.features))
        return license_to_dict(record, 0), key

    def list_licenses(self) -> list[dict[str, Any]]:
        with self.store.transaction() as tx:
            counts = tx.active_counts()
            return [license_to_dict(lic, counts.get(lic.id, 0)) for lic in tx.list_licenses()]

    def get_license(self, license_id: str) -> dict[str, Any]:
        with self.store.transaction() as tx:
            lic = self._license(tx, license_id)
            acts = tx.list_activations(license_id, include_freed=True)
        out = license_to_dict(lic, sum(1 for a in acts if a.active))
        out["activations"] = [activation_to_dict(a) for a in acts]
        return out

    def update_license(self, license_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change terms. A field present with null clears it (e.g. ``expires_at: null`` = never)."""
        if not isinstance(changes, dict):
            raise _bad("changes must be an object")
        unknown = sorted(set(changes) - set(_UPDATE_FIELDS))
        if unknown:
            raise _bad(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_UPDATE_FIELDS)}")
        now = self.clock()
        with self.store.transaction() as tx:
            lic = self._license(tx, license_id, lock=True)
            values: dict[str, Any] = {}
            features = set(lic.features)
            if changes.get("add_features") is not None:
                features |= set(_features(changes["add_features"], allow_empty=True))
            if changes.get("remove_features") is not None:
                features -= set(_features(changes["remove_features"], allow_empty=True))
            if features != set(lic.features):
                if not features:
                    raise _bad("a license needs at least one feature")
                values["features"] = tuple(sorted(features))
            for name in ("expires_at", "support_until", "max_connections"):
                if name in changes:
                    values[name] = _opt_int(name, changes[name], minimum=0)
            if "max_activations" in changes:
                if changes["max_activations"] is None:
                    raise _bad("max_activations cannot be null")
                values["max_activations"] = _opt_int("max_activations", changes["max_activations"], minimum=1)
            if "seats" in changes:
                if lic.model != "floating":
                    raise _bad("seats only apply to floating licenses")
                if changes["seats"] is None:
                    raise _bad("seats cannot be null")
                values["seats"] = _opt_int("seats", changes["seats"], minimum=1)
            if changes.get("status") is not None:
                status = changes["status"]
                if status not in STATUSES:
                    raise _bad(f"status must be one of {', '.join(STATUSES)}")
                if lic.status == "revoked" and status != "revoked":
                    raise _bad(f"license {lic.id} is revoked; a revocation is final")
                values["status"] = status
            if values:
                values["updated_at"] = now
                tx.update_license(lic.id, **values)
            lic = replace(lic, **values)
            used = tx.count_active(lic.id)
        if values:
            log.info("license %s updated: %s", lic.id, ", ".join(sorted(values)))
        return license_to_dict(lic, used)

    def set_status(self, license_id: str, status: str) -> dict[str, Any]:
        return self.update_license(license_id, {"status": status})

    # == admin: activations ====================================================

    def list_activations(self, license_id: str | None = None, *, include_freed: bool = False) -> list[dict[str, Any]]:
        with self.store.transaction() as tx:
            if license_id is not None:
                self._license(tx, license_id)
            return [activation_to_dict(a) for a in tx.list_activations(license_id, include_freed=include_freed)]

    def free_activation(self, activation_id: str) -> dict[str, Any]:
        """Free a lost activation (the instance was destroyed without deactivating)."""
        if not isinstance(activation_id, str):
            raise _bad("activation id must be a string")
        now = self.clock()
        with self.store.transaction() as tx:
            act = tx.get_activation(activation_id)
            if act is None:
                raise LicensingError(ErrorCode.ACTIVATION_NOT_FOUND, f"no activation {activation_id!r} exists")
            if not act.active:
                raise LicensingError(
                    ErrorCode.ALREADY_FREE,
                    f"activation {act.id} was already freed ({act.freed_reason}, {format_time(act.freed_at)})",
                )
            act = self._free(tx, act, now, "freed_by_vendor")
        log.info("activation %s of %s freed by the vendor", act.id, act.license_id)
        return activation_to_dict(act)

    # == public: online activation =============================================

    def activate(self, license_key: Any, request: bytes, client: str = "local") -> dict[str, Any]:
        """Online activation. Returns certificate (bytes), activation_id, license_id, reused."""
        lic, act, reused, now = self._first_contact(license_key, request, client, labels.KIND_ACTIVATE, "online")
        cert = self._activation_certificate(lic, act, now, valid_until=now + self.certificate_lifetime)
        return {"certificate": cert, "activation_id": act.id, "license_id": lic.id, "reused": reused}

    def check_in(self, request: bytes) -> bytes:
        """Refresh an online activation: a fresh certificate with the license's current terms.

        A refusal that should stop the instance (revoked, suspended, expired, freed) carries a
        signed :class:`Verdict` for exactly this request, so the agent can tell it from a forgery."""
        try:
            lic, act, now = self._refresh(request, labels.KIND_CHECK_IN, "online")
        except LicensingError as exc:
            if exc.code in VERDICT_CODES:
                exc.evidence = self._verdict(request, exc)
            raise
        return self._activation_certificate(lic, act, now, valid_until=now + self.certificate_lifetime)

    def _verdict(self, request: bytes, exc: LicensingError) -> bytes | None:
        try:
            claimed = InstanceRequest.from_body(parse_envelope(request).unverified_body())
        except LicensingError:
            return None
        if not claimed.activation_id:
            return None
        return Verdict(
            verdict=str(exc.code),
            activation_id=claimed.activation_id,
            instance_fingerprint=claimed.fingerprint,
            request_nonce=claimed.nonce,
            issued_at=self.clock(),
            message=exc.message,
        ).sign(self.signing_key)

    def deactivate(self, request: bytes) -> None:
        """Free the activation named by a deactivate request signed with its instance key."""
        now = self.clock()
        with self.store.transaction() as tx:
            act, req = self._verify_known(tx, request, labels.KIND_DEACTIVATE)
            self._check_fresh(req, now)
            if not act.active:
                raise LicensingError(
                    ErrorCode.ALREADY_FREE,
                    f"activation {act.id} is already free ({act.freed_reason}, {format_time(act.freed_at)})",
                )
            self._free(tx, act, now, "deactivated")
        log.info("activation %s of %s deactivated", act.id, act.license_id)

    # == public: floating servers, online =====================================

    def floating_activate(self, license_key: Any, request: bytes, client: str = "local") -> dict[str, Any]:
        lic, act, reused, now = self._first_contact(
            license_key, request, client, labels.KIND_FLOATING_ACTIVATE, "floating"
        )
        cert = self._floating_certificate(lic, act, now)
        return {"certificate": cert, "activation_id": act.id, "license_id": lic.id, "reused": reused}

    def floating_check_in(self, request: bytes) -> bytes:
        lic, act, now = self._refresh(request, labels.KIND_FLOATING_CHECK_IN, "floating")
        return self._floating_certificate(lic, act, now)

    # == admin: offline codes ==================================================

    def offline_activate(self, request_code: Any) -> dict[str, Any]:
        """Turn a usage request code into a usage license (armoured text)."""
        lic, act, reused, now = self._offline_bind(
            request_code, labels.USAGE_REQUEST, labels.KIND_OFFLINE_REQUEST, "offline"
        )
        cert = self._activation_certificate(lic, act, now, valid_until=lic.expires_at, request_nonce=act.request_nonce)
        return {
            "usage_license": armor(labels.USAGE_LICENSE, cert),
            "activation_id": act.id,
            "license_id": lic.id,
            "reused": reused,
        }

    def offline_deactivate(self, code: Any) -> dict[str, Any]:
        """Free the activation named by an instance-signed deactivation code; exactly once."""
        blob = unarmor(code, labels.DEACTIVATION_CODE)
        now = self.clock()
        with self.store.transaction() as tx:
            act, req = self._verify_known(tx, blob, labels.KIND_OFFLINE_DEACTIVATION)
            if req.license_id is not None and req.license_id != act.license_id:
                raise _bad("the deactivation code names another license than its activation's")
            result = {"activation_id": act.id, "license_id": act.license_id}
            if not act.active:
                return {
                    "freed": False,
                    "already_free": True,
                    **result,
                    "freed_at": act.freed_at,
                    "freed_reason": act.freed_reason,
                }
            self._free(tx, act, now, "offline_deactivation")
        log.info("activation %s of %s freed by an offline deactivation code", act.id, act.license_id)
        return {"freed": True, "already_free": False, **result}

    def floating_issue(self, request_code: Any) -> dict[str, Any]:
        """Turn a floating server's request code into an armoured floating certificate."""
        lic, act, reused, now = self._offline_bind(
            request_code, labels.FLOATING_REQUEST, labels.KIND_FLOATING_REQUEST, "floating"
        )
        cert = self._floating_certificate(lic, act, now, request_nonce=act.request_nonce)
        return {
            "certificate": armor(labels.FLOATING_CERTIFICATE, cert),
            "activation_id": act.id,
            "license_id": lic.id,
            "reused": reused,
        }

    # == internals ===========================================================

    def _license(self, tx: Tx, license_id: Any, *, lock: bool = False) -> LicenseRecord:
        lic = tx.get_license(license_id, lock=lock) if isinstance(license_id, str) else None
        if lic is None:
            raise LicensingError(ErrorCode.NOT_FOUND, f"no license {license_id!r} exists")
        return lic

    def _free(self, tx: Tx, act: ActivationRecord, now: int, reason: str) -> ActivationRecord:
        tx.get_license(act.license_id, lock=True)  # serialize with activations counting this license
        tx.update_activation(act.id, freed_at=now, freed_reason=reason)
        return replace(act, freed_at=now, freed_reason=reason)

    def _check_usable(self, lic: LicenseRecord, now: int, model: str | None) -> None:
        if model is not None and lic.model != model:
            raise LicensingError(
                ErrorCode.WRONG_MODEL,
                f"license {lic.id} is a {lic.model} license, not {model}: {_WRONG_MODEL_HINT[lic.model]}",
            )
        if lic.status == "revoked":
            raise LicensingError(ErrorCode.REVOKED, f"license {lic.id} has been revoked")
        if lic.status == "suspended":
            raise LicensingError(ErrorCode.SUSPENDED, f"license {lic.id} is suspended: contact the vendor")
        if lic.expires_at is not None and now >= lic.expires_at:
            raise LicensingError(ErrorCode.EXPIRED, f"license {lic.id} expired at {format_time(lic.expires_at)}")

    def _check_fresh(self, request: InstanceRequest, now: int) -> None:
        skew = request.created_at - now
        if abs(skew) > self.max_clock_skew:
            raise _bad(
                f"the request was made {abs(skew)} s {'ahead of' if skew > 0 else 'behind'} the "
                f"server's time ({format_time(now)}): the instance's clock is off, or the request "
                f"is a replay; fix the clock and retry"
            )

    # -- rate limiting of failed key lookups --------------------------------------
    def _check_rate(self, client: str, now: int, tx: Tx | None = None) -> None:
        if tx is None:
            with self.store.transaction() as own:
                return self._check_rate(client, now, own)
        rate = tx.get_rate(client)
        if rate is not None:
            start, failures = rate
            if now - start < self.rate_limit_window and failures >= self.rate_limit_failures:
                raise LicensingError(
                    ErrorCode.RATE_LIMITED,
                    f"too many failed license keys from {client}; retry in {self.rate_limit_window - (now - start)} s",
                )

    def _record_failure(self, client: str, now: int, tx: Tx | None = None) -> None:
        if tx is None:
            with self.store.transaction() as own:
                return self._record_failure(client, now, own)
        rate = tx.get_rate(client)
        if rate is None or now - rate[0] >= self.rate_limit_window:
            tx.put_rate(client, now, 1)
            tx.prune_rates(now - 10 * self.rate_limit_window)
        else:
            tx.put_rate(client, rate[0], rate[1] + 1)

    # -- first contact --------------------------------------------------------------
    def _first_contact(
        self, license_key: Any, blob: bytes, client: str, kind: str, model: str
    ) -> tuple[LicenseRecord, ActivationRecord, bool, int]:
        now = self.clock()
        self._check_rate(client, now)
        try:
            digest = key_digest(license_key)
        except LicensingError as exc:
            if exc.code == ErrorCode.INVALID_KEY:
                self._record_failure(client, now)
            raise
        request = open_instance_request(blob, kind)
        self._check_fresh(request, now)
        if request.key_digest != digest:
            raise _bad("the signed request is for another license key than the one sent")
        with self.store.transaction() as tx:
            # Checked again and counted in the lookup's own transaction: concurrent guesses from
            # one source cannot all pass the check above before any of them is counted.
            self._check_rate(client, now, tx)
            lic = tx.get_license_by_digest(digest, lock=True)
            if lic is None:
                self._record_failure(client, now, tx)
            else:
                self._check_usable(lic, now, model)
                act, reused = self._bind(tx, lic, request, now)
        if lic is None:
            raise LicensingError(ErrorCode.KEY_NOT_FOUND, "this license key is not known to the vendor")
        log.info(
            "%s %s of %s for instance %s",
            "re-activation" if reused else "activation",
            act.id,
            lic.id,
            act.instance_fingerprint,
        )
        return lic, act, reused, now

    def _offline_bind(
        self, code: Any, label: str, kind: str, model: str
    ) -> tuple[LicenseRecord, ActivationRecord, bool, int]:
        request = open_instance_request(unarmor(code, label), kind)
        if not request.key_digest:
            raise _bad("the request code names no license key")
        now = self.clock()
        with self.store.transaction() as tx:
            lic = tx.get_license_by_digest(request.key_digest, lock=True)
            if lic is None:
                raise LicensingError(ErrorCode.KEY_NOT_FOUND, "the request code's license key is not known")
            self._check_usable(lic, now, model)
            if request.activation_id is not None:
                named = tx.get_activation(request.activation_id)
                if named is not None and (
                    named.license_id != lic.id or named.instance_fingerprint != request.fingerprint
                ):
                    raise _bad("the request names an activation of another license or instance")
            act, reused = self._bind(tx, lic, request, now, nonce=request.nonce)
        log.info(
            "offline %s %s of %s for instance %s",
            "update" if reused else "activation",
            act.id,
            lic.id,
            act.instance_fingerprint,
        )
        return lic, act, reused, now

    def _bind(
        self, tx: Tx, lic: LicenseRecord, request: InstanceRequest, now: int, nonce: str | None = None
    ) -> tuple[ActivationRecord, bool]:
        """The instance's live activation of ``lic`` (reused), or a new one if any is left.

        Must run in the transaction that locked ``lic``.
        """
        existing = tx.find_live_activation(lic.id, request.fingerprint)
        if existing is not None:
            updates: dict[str, Any] = {"last_check_in_at": now}
            if nonce is not None and existing.request_nonce != nonce:
                if existing.request_created_at is not None and request.created_at < existing.request_created_at:
                    raise LicensingError(
                        ErrorCode.REQUEST_SUPERSEDED,
                        "a newer request code of this instance was already answered; use the newest request code",
                    )
                updates.update(request_nonce=nonce, request_created_at=request.created_at)
            tx.update_activation(existing.id, **updates)
            return replace(existing, **updates), True
        used = tx.count_active(lic.id)
        if used >= lic.max_activations:
            raise LicensingError(
                ErrorCode.NO_ACTIVATIONS_LEFT,
                f"all {lic.max_activations} activation(s) of license {lic.id} are in use: "
                f"deactivate one, or ask the vendor to free a lost one",
            )
        act = ActivationRecord(
            id=new_id("act"),
            license_id=lic.id,
            instance_fingerprint=request.fingerprint,
            public_key=request.public_key,
            model=lic.model,
            created_at=now,
            last_check_in_at=now,
            request_nonce=nonce,
            request_created_at=request.created_at if nonce is not None else None,
            freed_at=None,
            freed_reason=None,
        )
        tx.insert_activation(act)
        return act, False

    # -- later requests ----------------------------------------------------------------
    def _verify_known(self, tx: Tx, blob: bytes, kind: str) -> tuple[ActivationRecord, InstanceRequest]:
        """Verify a request against the key on record for the activation it names."""
        claimed = InstanceRequest.from_body(parse_envelope(blob).unverified_body())
        if not claimed.activation_id:
            raise _bad("the request names no activation")
        act = tx.get_activation(claimed.activation_id)
        if act is None:
            raise LicensingError(
                ErrorCode.ACTIVATION_NOT_FOUND, f"activation {claimed.activation_id!r} is not known to the vendor"
            )
        request = open_instance_request(blob, kind, load_public_key(act.public_key))
        if request.fingerprint != act.instance_fingerprint:
            raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the request is not from the activated instance")
        return act, request

    def _refresh(self, blob: bytes, kind: str, model: str) -> tuple[LicenseRecord, ActivationRecord, int]:
        now = self.clock()
        with self.store.transaction() as tx:
            act, request = self._verify_known(tx, blob, kind)
            self._check_fresh(request, now)
            if not act.active:
                why = {
                    "deactivated": "it was deactivated",
                    "freed_by_vendor": "the vendor freed it",
                    "offline_deactivation": "it was freed by an offline deactivation code",
                }.get(act.freed_reason or "", "it was freed")
                raise LicensingError(
                    ErrorCode.ACTIVATION_NOT_FOUND,
                    f"activation {act.id} is no longer valid: {why} at {format_time(act.freed_at)}; activate again",
                )
            if act.model != model:
                raise LicensingError(
                    ErrorCode.WRONG_MODEL, f"activation {act.id} is {act.model}, it cannot check in as {model}"
                )
            lic = self._license(tx, act.license_id, lock=True)
            self._check_usable(lic, now, None)
            tx.update_activation(act.id, last_check_in_at=now)
        return lic, replace(act, last_check_in_at=now), now

    # -- documents -------------------------------------------------------------------
    def _activation_certificate(
        self,
        lic: LicenseRecord,
        act: ActivationRecord,
        now: int,
        *,
        valid_until: int | None,
        request_nonce: str | None = None,
    ) -> bytes:
        return ActivationCertificate(
            license_id=lic.id,
            key_mask=lic.key_mask,
            activation_id=act.id,
            model=lic.model,
            features=lic.features,
            instance_fingerprint=act.instance_fingerprint,
            issued_at=now,
            valid_until=valid_until,
            expires_at=lic.expires_at,
            support_until=lic.support_until,
            max_connections=lic.max_connections,
            request_nonce=request_nonce,
        ).sign(self.signing_key)

    def _floating_certificate(
        self, lic: LicenseRecord, act: ActivationRecord, now: int, *, request_nonce: str | None = None
    ) -> bytes:
        return FloatingCertificate(
            license_id=lic.id,
            key_mask=lic.key_mask,
            activation_id=act.id,
            server_fingerprint=act.instance_fingerprint,
            server_public_key=act.public_key,
            seats=lic.seats or 0,
            features=lic.features,
            issued_at=now,
            valid_until=lic.expires_at,
            expires_at=lic.expires_at,
            support_until=lic.support_until,
            max_connections=lic.max_connections,
            request_nonce=request_nonce,
        ).sign(self.signing_key)


__all__ = [
    "DEFAULT_CERTIFICATE_LIFETIME",
    "ActivationService",
    "activation_to_dict",
    "format_time",
    "license_to_dict",
    "system_clock",
]
