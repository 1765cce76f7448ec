"""The customer self-service portal: sign in with license key + a code mailed to the
purchase address; see terms and activations; free a lost activation; turn an offline
request code into a usage license; hand in an offline deactivation code.

Each action calls the very :class:`ActivationService` method the vendor's CLI uses
(``vendor free`` / ``offline-activate`` / ``offline-deactivate``); the portal only
adds who may call it: the signed-in license's own activations and codes, and at most
``frees_per_30_days`` frees per license (which also ends endless deactivate/re-activate
cycling through support).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from ...core import labels
from ...core.codes import unarmor
from ...core.documents import InstanceRequest, open_instance_request
from ...core.errors import ErrorCode, LicensingError
from ...core.signing import parse_envelope
from ..activation.results import OfflineActivation, OfflineDeactivation
from ..activation.service import ActivationService
from .config import ShopConfig
from .lineup import named
from .mail import Mailer, check_email, mask_email
from .messages import earlier_names, last_seen
from .store import ShopStore

log = logging.getLogger(__name__)

CODE_TTL = 600
CODE_ATTEMPTS = 5  # wrong guesses before every live code of the license is burnt
CODES_PER_HOUR = 5  # sign-in mails per license: no mail-bombing the customer
SESSION_TTL = 3600
WINDOW = 30 * 86400


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _denied() -> LicensingError:
    return LicensingError(ErrorCode.UNAUTHORIZED, "wrong or expired code: request a new one")


class Portal:
    def __init__(self, service: ActivationService, store: ShopStore, config: ShopConfig, mailer: Mailer) -> None:
        self.service, self.store, self.config, self.mailer = service, store, config, mailer

    def _license_id(self, license_key: Any) -> str:
        return str(self.service.license_for_key(license_key)["id"])

    def set_contact(self, license_id: str, email: Any) -> None:
        record_contact(self.service, self.store, license_id, email)

    # -- signing in ---------------------------------------------------------------
    def request_code(self, license_key: Any) -> str:
        """Mail a one-time code to the license's purchase address; returns the address, masked."""
        license_id = self._license_id(license_key)
        now = self.service.clock()
        code = f"{secrets.randbelow(10**8):08d}"
        with self.store.transaction() as tx:
            email = tx.contact(license_id)
            if email is None:
                raise LicensingError(
                    ErrorCode.NOT_FOUND,
                    f"license {license_id} has no purchase e-mail on record: ask the vendor to add one "
                    "(vendor contact)",
                )
            if tx.count_codes_since(license_id, now - 3600) >= CODES_PER_HOUR:
                raise LicensingError(ErrorCode.RATE_LIMITED, "too many sign-in codes this hour; try again later")
            tx.insert_code(license_id, _digest(code), now, now + CODE_TTL)
            tx.prune(now)
        self.mailer.send(
            email,
            "Your sign-in code",
            f"Your code for the customer portal (license {license_id}):\n\n    {code}\n\n"
            f"It is valid for {CODE_TTL // 60} minutes. If you did not ask for it, ignore this e-mail.\n",
        )
        return mask_email(email)

    def sign_in(self, license_key: Any, code: Any) -> tuple[str, str]:
        """A new session (token, csrf) for the right key + code; the code works once."""
        license_id = self._license_id(license_key)
        if not isinstance(code, str) or not code.strip().isdigit():
            raise _denied()
        given = _digest(code.strip())
        now = self.service.clock()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
        with self.store.transaction() as tx:
            # Concurrent sign-ins of one license wait here (the row lock on PostgreSQL, the
            # immediate transaction on SQLite), so every wrong guess counts.
            tx.lock_contact(license_id)
            live = tx.live_codes(license_id, now)
            match = next((cid for cid, digest, _n in live if hmac.compare_digest(digest, given)), None)
            if match is None:
                for cid, _unused, attempts in live:
                    tx.update_code(cid, attempts=attempts + 1, used=attempts + 1 >= CODE_ATTEMPTS)
            else:
                tx.update_code(match, used=True)
                tx.insert_session(_digest(token), license_id, csrf, now + SESSION_TTL)
        if match is None:
            raise _denied()
        log.info("portal sign-in for license %s", license_id)
        return token, csrf

    def sign_out(self, token: str) -> None:
        with self.store.transaction() as tx:
            tx.delete_session(_digest(token))

    # -- what the customer sees ----------------------------------------------------
    def overview(self, license_id: str) -> dict[str, Any]:
        lic = self.service.get_license(license_id)
        now = self.service.clock()
        with self.store.transaction() as tx:
            used = tx.count_frees_since(license_id, now - WINDOW)
        lic["feature_names"] = named(lic["features"], lic["definitions"])
        for act in lic["activations"]:  # the broker's names and when we heard from it, in words
            act["seen"] = last_seen(act, now)
            act["earlier"], act["earlier_more"] = earlier_names(act)
        lic["frees_left"] = max(0, self.config.frees_per_30_days - used)
        lic["frees_per_30_days"] = self.config.frees_per_30_days
        return lic

    # -- actions ----------------------------------------------------------------------
    def free(self, license_id: str, activation_id: Any) -> dict[str, Any]:
        """``vendor free`` for one of this license's own activations, within the 30-day limit."""
        mine = {a["id"]: a for a in self.service.get_license(license_id)["activations"]}
        if not isinstance(activation_id, str) or activation_id not in mine:
            raise LicensingError(ErrorCode.ACTIVATION_NOT_FOUND, "this license has no such activation")
        if not mine[activation_id]["active"]:
            return self.service.free_activation(activation_id)  # says when and how it was freed
        now = self.service.clock()
        limit = self.config.frees_per_30_days
        with self.store.transaction() as tx:
            tx.lock_contact(license_id)  # two concurrent frees cannot both see one left
            if tx.count_frees_since(license_id, now - WINDOW) >= limit:
                raise LicensingError(
                    ErrorCode.RATE_LIMITED,
                    f"at most {limit} lost activation(s) can be freed here per 30 days; contact support",
                )
            tx.insert_free(activation_id, license_id, now)
        try:
            act = self.service.free_activation(activation_id, by="customer")
        except LicensingError:
            with self.store.transaction() as tx:
                tx.delete_free(activation_id)
            raise
        log.info("portal: activation %s of %s freed by the customer", activation_id, license_id)
        return act

    def offline_activate(self, license_id: str, request_code: Any) -> OfflineActivation:
        """``vendor offline-activate`` for a request code made with this license's key."""
        request = open_instance_request(unarmor(request_code, labels.USAGE_REQUEST), labels.KIND_OFFLINE_REQUEST)
        try:
            owner = self.service.license_by_key_digest(request.key_digest or "")["id"]
        except LicensingError:
            owner = None
        if owner != license_id:
            raise LicensingError(ErrorCode.BAD_REQUEST, f"this request code is not for license {license_id}")
        return self.service.offline_activate(request_code)

    def offline_deactivate(self, license_id: str, code: Any) -> OfflineDeactivation:
        """``vendor offline-deactivate`` for a deactivation code of one of this license's activations."""
        claimed = InstanceRequest.from_body(parse_envelope(unarmor(code, labels.DEACTIVATION_CODE)).unverified_body())
        mine = {a["id"] for a in self.service.get_license(license_id)["activations"]}
        if claimed.activation_id not in mine:
            raise LicensingError(ErrorCode.BAD_REQUEST, f"this deactivation code is not for license {license_id}")
        return self.service.offline_deactivate(code)


def record_contact(service: ActivationService, store: ShopStore, license_id: str, email: Any) -> None:
    """Record (or replace) the customer address of a license, e.g. one sold by vendor staff."""
    address = check_email(email)
    service.get_license(license_id)  # NOT_FOUND for an unknown id
    with store.transaction() as tx:
        tx.replace_contact(license_id, address, service.clock())


__all__ = ["Portal", "record_contact"]
