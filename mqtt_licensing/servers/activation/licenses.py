"""The vendor's admin work on licenses and activations: issue, list, show, change terms, free."""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from typing import Any, Literal

from ...core.errors import ErrorCode, LicensingError
from ...core.features import validate_features
from ...core.keys import format_key, key_digest, mask_key
from ...core.models import LicenseModel
from ...core.timefmt import iso
from . import names
from .catalogue import CatalogueQueries, check_new_license, template_license_terms
from .heartbeats import heartbeat_terms
from .records import ServiceContext, activation_to_dict, bad, license_to_dict, new_id
from .store import LicenseRecord

log = logging.getLogger(__name__)

STATUSES = ("active", "suspended", "revoked")
ISSUE_FIELDS = (
    "template",
    "features",
    "model",
    "max_activations",
    "seats",
    "expires_at",
    "support_until",
    "max_connections",
    "metering",
    "overage",
    "clone_policy",
    "heartbeat_interval",
    "release_after",
)
METERING = ("best_effort", "required")
CLONE_POLICIES = ("flag", "suspend")
UPDATE_FIELDS = (
    "add_features",
    "remove_features",
    "expires_at",
    "support_until",
    "max_activations",
    "max_connections",
    "seats",
    "status",
    "metering",
    "clone_policy",
    "overage",
    "heartbeat_interval",
    "release_after",
)


def _metering(value: Any) -> str:
    if value is None:
        return "best_effort"
    if value not in METERING:
        raise bad(f"metering must be one of {', '.join(METERING)}")
    return str(value)


def _status_change(lic: LicenseRecord, status: Any) -> str:
    if status not in STATUSES:
        raise bad(f"status must be one of {', '.join(STATUSES)}")
    if lic.status == "revoked" and status != "revoked":
        raise bad(f"license {lic.id} is revoked; a revocation is final")
    return str(status)


def _clone_policy(value: Any) -> str:
    if value not in CLONE_POLICIES:
        raise bad(f"clone_policy must be one of {', '.join(CLONE_POLICIES)}")
    return str(value)


def _overage(value: Any) -> float:
    """A fraction of max_connections (EMQX allows 10 %, Keygen 25/50/100 %); null means none."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise bad("overage must be a number from 0 to 1 (0.1 = 10 % over max_connections)")
    return float(value)


def _opt_int(name: str, value: Any, *, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{name} must be an integer or null")
    if value < minimum:
        raise bad(f"{name} must be at least {minimum}")
    if value >= 2**62:
        raise bad(f"{name} is too large")
    return value


def _features(value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        raise bad("features must be a list of feature names")
    # Names only here: whether the catalogue sells them is checked in the license's transaction.
    features = validate_features(value)
    if not features and not allow_empty:
        raise bad("a license needs at least one feature")
    return features


def _changed_features(current: tuple[str, ...], changes: dict[str, Any]) -> tuple[str, ...] | None:
    features = set(current)
    if changes.get("add_features") is not None:
        features |= set(_features(changes["add_features"], allow_empty=True))
    if changes.get("remove_features") is not None:
        features -= set(_features(changes["remove_features"], allow_empty=True))
    if features == set(current):
        return None
    if not features:
        raise bad("a license needs at least one feature")
    return tuple(sorted(features))


def _changed_heartbeat_terms(lic: LicenseRecord, changes: dict[str, Any]) -> dict[str, Any]:
    if "heartbeat_interval" not in changes and "release_after" not in changes:
        return {}
    terms = heartbeat_terms(
        lic.model,
        changes.get("heartbeat_interval", ...),  # ... = not given: the license's value stays
        changes.get("release_after", ...),
        current=(lic.heartbeat_interval, lic.release_after),
    )
    return {name: value for name, value in terms.items() if value != getattr(lic, name)}


class LicenseAdmin:
    """The vendor's admin work on licenses and activations."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def issue_license(self, *, template: Any = None, **terms: Any) -> tuple[dict[str, Any], str]:
        """Create a license; returns (its record, the key). The key is never stored or shown again.

        With ``template`` the license starts from that template's terms (its valid_days and
        support_years counted from now) and the ``terms`` given override them."""
        unknown = sorted(set(terms) - set(ISSUE_FIELDS))
        if unknown:
            raise bad(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(ISSUE_FIELDS)}")
        now = self.ctx.clock()
        if template is not None:
            if not isinstance(template, str):
                raise bad("template must be a template's name")
            with self.ctx.store.transaction() as tx:
                found = CatalogueQueries(tx.conn).all_templates().get(template)
            if found is None:
                raise LicensingError(ErrorCode.NOT_FOUND, f"no template {template!r}: see vendor template list")
            given = {k: v for k, v in terms.items() if k != "features" or v is not None}
            terms = {**template_license_terms(found, now), **given}  # a term given, even null, overrides
        if terms.get("features") is None:
            raise bad("a license needs features (or a template)")
        return self._issue(now, **terms)

    def _issue(
        self,
        now: int,
        *,
        features: Any,
        model: Any = LicenseModel.ONLINE,
        max_activations: Any = 1,
        seats: Any = None,
        expires_at: Any = None,
        support_until: Any = None,
        max_connections: Any = None,
        metering: Any = "best_effort",
        overage: Any = None,
        clone_policy: Any = None,
        heartbeat_interval: Any = None,
        release_after: Any = None,
    ) -> tuple[dict[str, Any], str]:
        model = LicenseModel.ONLINE if model is None else model
        if model not in set(LicenseModel):
            raise bad(f"model must be one of {', '.join(LicenseModel)}")
        model = LicenseModel(model)
        max_activations = _opt_int("max_activations", 1 if max_activations is None else max_activations, minimum=1)
        seats = _opt_int("seats", seats, minimum=1)
        if model == LicenseModel.FLOATING and seats is None:
            raise bad("a floating license needs a number of seats")
        if model != LicenseModel.FLOATING and seats is not None:
            raise bad("seats only apply to floating licenses")
        key = format_key(secrets.token_bytes(15))
        record = LicenseRecord(
            id=new_id("lic"),
            key_digest=key_digest(key),
            key_mask=mask_key(key),
            model=str(model),
            features=_features(features),
            max_activations=max_activations or 1,
            seats=seats,
            expires_at=_opt_int("expires_at", expires_at, minimum=0),
            support_until=_opt_int("support_until", support_until, minimum=0),
            max_connections=_opt_int("max_connections", max_connections, minimum=0),
            status="active",
            created_at=now,
            updated_at=now,
            metering=_metering(metering),
            overage=_overage(overage),
            clone_policy="flag" if clone_policy is None else _clone_policy(clone_policy),
            **heartbeat_terms(model, heartbeat_interval, release_after),
        )
        with self.ctx.store.transaction() as tx:
            check_new_license(record.features, CatalogueQueries(tx.conn).all_features())
            tx.insert_license(record)
            self.ctx.event(
                tx, "license.created", license_id=record.id, model=record.model, features=list(record.features)
            )
        log.info("issued license %s (%s, %s)", record.id, model, ",".join(record.features))
        return license_to_dict(record, 0), key

    def list_licenses(self) -> list[dict[str, Any]]:
        with self.ctx.store.transaction() as tx:
            counts = tx.active_counts()
            return [license_to_dict(lic, counts.get(lic.id, 0)) for lic in tx.list_licenses()]

    def get_license(self, license_id: str) -> dict[str, Any]:
        with self.ctx.store.transaction() as tx:
            lic = self.ctx.license(tx, license_id)
            acts = tx.list_activations(license_id, include_freed=True)
            definitions = self.ctx.definitions(tx, lic)
            history = names.histories(tx.conn, (a.id for a in acts))
        out = license_to_dict(lic, sum(1 for a in acts if a.active))
        out["activations"] = [activation_to_dict(a) | {"label_history": history[a.id]} for a in acts]
        out["definitions"] = list(definitions)  # what its certificates carry now (titles for people)
        return out

    def license_by_key_digest(self, digest: str) -> dict[str, Any]:
        """The license a key (its digest) belongs to, for callers that prove they hold the key."""
        with self.ctx.store.transaction() as tx:
            lic = tx.get_license_by_digest(digest)
        if lic is None:
            raise LicensingError(ErrorCode.KEY_NOT_FOUND, "this license key is not known")
        return license_to_dict(lic)

    def support_ending(self, start: int, end: int) -> list[tuple[str, int]]:
        """(license id, support end) of active licenses whose support ends in [start, end)."""
        with self.ctx.store.transaction() as tx:
            return tx.support_ending(start, end)

    def update_license(self, license_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change terms. A field present with null clears it (e.g. ``expires_at: null`` = never)."""
        if not isinstance(changes, dict):
            raise bad("changes must be an object")
        unknown = sorted(set(changes) - set(UPDATE_FIELDS))
        if unknown:
            raise bad(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(UPDATE_FIELDS)}")
        now = self.ctx.clock()
        with self.ctx.store.transaction() as tx:
            lic = self.ctx.license(tx, license_id, lock=True)
            values = self._changed_terms(lic, changes)
            if "features" in values:  # features it had stay valid even if retired since
                check_new_license(values["features"], CatalogueQueries(tx.conn).all_features(), keep=lic.features)
            if values:
                values["updated_at"] = now
                tx.update_license(lic.id, **values)
                self.ctx.event(tx, _license_event(lic.status, values), license_id=lic.id, changed=sorted(values))
            lic = replace(lic, **values)
            used = tx.count_active(lic.id)
        if values:
            log.info("license %s updated: %s", lic.id, ", ".join(sorted(values)))
        return license_to_dict(lic, used)

    @staticmethod
    def _changed_terms(lic: LicenseRecord, changes: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        features = _changed_features(lic.features, changes)
        if features is not None:
            values["features"] = features
        for name in ("expires_at", "support_until", "max_connections"):
            if name in changes:
                values[name] = _opt_int(name, changes[name], minimum=0)
        if "max_activations" in changes:
            if changes["max_activations"] is None:
                raise bad("max_activations cannot be null")
            values["max_activations"] = _opt_int("max_activations", changes["max_activations"], minimum=1)
        if "seats" in changes:
            if lic.model != LicenseModel.FLOATING:
                raise bad("seats only apply to floating licenses")
            if changes["seats"] is None:
                raise bad("seats cannot be null")
            values["seats"] = _opt_int("seats", changes["seats"], minimum=1)
        if "overage" in changes:
            values["overage"] = _overage(changes["overage"])
        values.update(_changed_heartbeat_terms(lic, changes))
        for name, check in (("metering", _metering), ("clone_policy", _clone_policy)):
            if name in changes:
                values[name] = check(changes[name])
        if changes.get("status") is not None:
            values["status"] = _status_change(lic, changes["status"])
        return values

    def set_status(self, license_id: str, status: str) -> dict[str, Any]:
        return self.update_license(license_id, {"status": status})

    def list_activations(self, license_id: str | None = None, *, include_freed: bool = False) -> list[dict[str, Any]]:
        with self.ctx.store.transaction() as tx:
            if license_id is not None:
                self.ctx.license(tx, license_id)
            acts = tx.list_activations(license_id, include_freed=include_freed)
            history = names.histories(tx.conn, (a.id for a in acts))
            return [activation_to_dict(a) | {"label_history": history[a.id]} for a in acts]

    def free_activation(self, activation_id: str, *, by: Literal["vendor", "customer"] = "vendor") -> dict[str, Any]:
        """Free a lost activation (the instance was destroyed without deactivating); ``by`` is who
        asked (the vendor, or the customer in the store's portal), recorded as the reason."""
        if not isinstance(activation_id, str):
            raise bad("activation id must be a string")
        now = self.ctx.clock()
        with self.ctx.store.transaction() as tx:
            act = tx.get_activation(activation_id)
            if act is None:
                raise LicensingError(ErrorCode.ACTIVATION_NOT_FOUND, f"no activation {activation_id!r} exists")
            if not act.active:
                raise LicensingError(
                    ErrorCode.ALREADY_FREE,
                    f"activation {act.id} was already freed ({act.freed_reason}, {iso(act.freed_at)})",
                )
            act = self.ctx.free(tx, act, now, f"freed_by_{by}")
        log.info("activation %s of %s freed by the %s", act.id, act.license_id, by)
        return activation_to_dict(act)


def _license_event(before: str, values: dict[str, Any]) -> str:
    """The webhook event of a change: a status change is named for what it did."""
    status = values.get("status", before)
    if status == before:
        return "license.updated"
    return {"suspended": "license.suspended", "revoked": "license.revoked"}.get(status, "license.reinstated")
