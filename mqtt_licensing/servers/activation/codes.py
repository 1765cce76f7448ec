"""Offline codes: usage requests turned into usage licenses, deactivation codes, and floating
servers' request codes turned into floating certificates (the vendor's admin side)."""

from __future__ import annotations

import logging
from typing import Any

from ...core import labels
from ...core.codes import armor, unarmor
from ...core.documents import open_instance_request
from ...core.errors import ErrorCode, LicensingError
from ...core.models import LicenseModel
from ...core.timefmt import iso
from .forwarded import ForwardedUsage
from .records import ServiceContext, bad
from .results import FloatingIssue, OfflineActivation, OfflineDeactivation
from .store import ActivationRecord, LicenseRecord
from .usage import Usage

log = logging.getLogger(__name__)


class OfflineCodes:
    """Request codes turned into usage licenses or floating certificates; deactivation codes."""

    def __init__(self, ctx: ServiceContext, usage: Usage, forwarded: ForwardedUsage) -> None:
        self.ctx = ctx
        self.usage = usage
        self.forwarded = forwarded

    def offline_activate(self, request_code: Any) -> OfflineActivation:
        """Turn a usage request code into a usage license (armoured text)."""
        lic, act, reused, now, stored, defs = self._offline_bind(
            request_code, labels.USAGE_REQUEST, labels.KIND_OFFLINE_REQUEST, LicenseModel.OFFLINE
        )
        cert = self.ctx.activation_certificate(
            lic,
            act,
            now,
            valid_until=lic.expires_at,
            definitions=defs,
            request_nonce=act.request_nonce,
            usage_stored=tuple(s for s in stored if isinstance(s, int)),
        )
        return OfflineActivation(armor(labels.USAGE_LICENSE, cert), act.id, lic.id, reused, len(stored))

    def offline_deactivate(self, code: Any) -> OfflineDeactivation:
        """Free the activation named by an instance-signed deactivation code; exactly once."""
        blob = unarmor(code, labels.DEACTIVATION_CODE)
        now = self.ctx.clock()
        with self.ctx.store.transaction() as tx:
            act, req = self.ctx.verify_known(tx, blob, labels.KIND_OFFLINE_DEACTIVATION)
            if req.license_id is not None and req.license_id != act.license_id:
                raise bad("the deactivation code names another license than its activation's")
            # Usage recorded up to the deactivation still bills; stored once however often the code comes.
            stored = self.usage.import_usage(tx, act, list(req.usage), "offline")
            if not act.active:
                return OfflineDeactivation(
                    False, True, act.id, act.license_id, len(stored), act.freed_at, act.freed_reason
                )
            self.ctx.free(tx, act, now, "offline_deactivation")
        log.info("activation %s of %s freed by an offline deactivation code", act.id, act.license_id)
        return OfflineDeactivation(True, False, act.id, act.license_id, len(stored))

    def floating_issue(self, request_code: Any) -> FloatingIssue:
        """Turn a floating server's request code into an armoured floating certificate."""
        lic, act, reused, now, stored, defs = self._offline_bind(
            request_code, labels.FLOATING_REQUEST, labels.KIND_FLOATING_REQUEST, LicenseModel.FLOATING
        )
        refs = tuple(str(ref) for ref in stored)
        cert = self.ctx.floating_certificate(
            lic, act, now, definitions=defs, request_nonce=act.request_nonce, usage_stored=refs
        )
        return FloatingIssue(armor(labels.FLOATING_CERTIFICATE, cert), act.id, lic.id, reused, len(refs))

    def _offline_bind(
        self, code: Any, label: str, kind: str, model: LicenseModel
    ) -> tuple[LicenseRecord, ActivationRecord, bool, int, list[int] | list[str], tuple[dict[str, Any], ...]]:
        request = open_instance_request(unarmor(code, label), kind)
        if not request.key_digest:
            raise bad("the request code names no license key")
        now = self.ctx.clock()
        with self.ctx.store.transaction() as tx:
            lic = tx.get_license_by_digest(request.key_digest, lock=True)
            if lic is None:
                raise LicensingError(ErrorCode.KEY_NOT_FOUND, "the request code's license key is not known")
            self.ctx.check_usable(lic, now, model)
            if request.activation_id is not None:
                named = tx.get_activation(request.activation_id)
                if named is not None and (
                    named.license_id != lic.id or named.instance_fingerprint != request.fingerprint
                ):
                    raise bad("the request names an activation of another license or instance")
                if named is not None and named.freed_reason == "offline_deactivation":
                    # This instance handed in a deactivation code for that activation and
                    # still holds it: its state folder was restored from a backup taken before.
                    log.warning(
                        "instance %s renews activation %s, which it gave up with a deactivation code at %s",
                        request.fingerprint,
                        named.id,
                        iso(named.freed_at),
                    )
                    raise LicensingError(
                        ErrorCode.DEACTIVATED,
                        f"this instance gave activation {named.id} up with a deactivation code at "
                        f"{iso(named.freed_at)} and still holds it (a state folder restored from a backup); "
                        "it must not serve: no usage license is issued",
                    )
            act, reused = self.ctx.bind(tx, lic, request, now, nonce=request.nonce)
            stored: list[int] | list[str]
            if kind == labels.KIND_FLOATING_REQUEST:  # its brokers' records, each with its own key
                stored = self.forwarded.import_forwarded(tx, act, request, "floating_offline")
            else:
                stored = self.usage.import_usage(tx, act, list(request.usage), "offline")
            defs = self.ctx.definitions(tx, lic)
        log.info(
            "offline %s %s of %s for instance %s",
            "update" if reused else "activation",
            act.id,
            lic.id,
            act.instance_fingerprint,
        )
        return lic, act, reused, now, stored, defs
