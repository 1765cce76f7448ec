"""What instances ask of the activation server themselves: first contact (online activation of a
broker or a floating server), check-in with signed verdicts, deactivation; and the rate limit on
failed license keys.

First contact is verified against the public key the request carries - it *becomes* the key on
record for the new activation; everything later is verified against the key on record, so only the
instance holding the private key can refresh or free its activation.

Every signed request is accepted once: its nonce is remembered for the freshness window, per
license key (first contact) or per activation (check-in, deactivation), and a replay is refused.
A refusal carries a signed :class:`Verdict` only for a request that verified against the key on
record: the vendor key never signs values a stranger made up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from ...core import labels
from ...core.documents import InstanceRequest, TrialRecord, Verdict, open_instance_request
from ...core.errors import ErrorCode, LicensingError
from ...core.keys import key_digest
from ...core.models import LicenseModel
from ...core.timefmt import iso
from .._jobs import Job
from .._requests import check_fresh, fresh_once
from . import names
from .clones import cloned_error, follow_chain
from .records import FREED_REASONS, ServiceContext, bad, told_heartbeats
from .results import ActivationResult
from .store import ActivationRecord, LicenseRecord, Tx

log = logging.getLogger(__name__)

T = TypeVar("T")
Defs = tuple[dict[str, Any], ...]  # the granted features' definitions, read in the transaction
Answer = Callable[[LicenseRecord, ActivationRecord, int, Defs], T]  # the signed answer, once committed

RELEASED_REASON = "released_no_heartbeat"  # freed by the release duty: its own instance may take it back


def gone_error(act: ActivationRecord) -> LicensingError:
    """What an instance hears when its activation is no longer live: ``released`` when the vendor
    released it for silence (the agent may activate again), else ``activation_not_found``."""
    why = FREED_REASONS.get(act.freed_reason or "", "it was freed")
    code = ErrorCode.RELEASED if act.freed_reason == RELEASED_REASON else ErrorCode.ACTIVATION_NOT_FOUND
    return LicensingError(code, f"activation {act.id} is no longer valid: {why} at {iso(act.freed_at)}; activate again")


class Instances:
    """What instances ask themselves: activation, check-in, deactivation, trial records."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._nonces_pruned_at = 0

    def activate(self, license_key: Any, request: bytes, client: str = "local") -> ActivationResult:
        """Online activation: the signed certificate, which activation, whether it was reused."""
        lic, act, reused, now, defs = self._first_contact(
            license_key, request, client, labels.KIND_ACTIVATE, LicenseModel.ONLINE
        )
        valid_until = self.ctx.online_valid_until(lic, now)
        cert = self.ctx.activation_certificate(lic, act, now, valid_until=valid_until, definitions=defs)
        return ActivationResult(cert, act.id, lic.id, reused)

    def check_in(self, request: bytes) -> bytes:
        """Refresh an online activation: a fresh certificate with the license's current terms.

        A refusal that should stop the instance (revoked, suspended, expired, freed) carries a
        signed :class:`Verdict` for exactly this request, so the agent can tell it from a forgery."""
        return self.check_in_job(request).run(self.ctx.store)

    def check_in_job(self, request: bytes) -> Job[Any, bytes]:
        """:meth:`check_in` as a :class:`.._jobs.Job` (the server batches them on one thread, on SQLite)."""

        def answer(lic: LicenseRecord, act: ActivationRecord, now: int, defs: Defs) -> bytes:
            valid_until = self.ctx.online_valid_until(lic, now)
            return self.ctx.activation_certificate(lic, act, now, valid_until=valid_until, definitions=defs)

        return self._refresh_job(request, labels.KIND_CHECK_IN, LicenseModel.ONLINE, answer)

    def revive(self, request: bytes) -> bytes:
        """A released activation taken back by its own instance, if the license has one free: the
        request is signed with the key on record, so the broker needs no license key kept on disk.
        A live one is refreshed as by a check-in; one freed for any other reason stays freed."""
        lic, act, now, defs = self._refresh(request, labels.KIND_REVIVE, LicenseModel.ONLINE, verdicts=True)
        valid_until = self.ctx.online_valid_until(lic, now)
        return self.ctx.activation_certificate(lic, act, now, valid_until=valid_until, definitions=defs)

    def _take_back(self, tx: Tx, act: ActivationRecord, now: int) -> ActivationRecord:
        if act.active or act.freed_reason != RELEASED_REASON:
            return act
        lic = self.ctx.license(tx, act.license_id, lock=True)  # serialised with activations counting it
        self.ctx.check_usable(lic, now, None)
        if tx.count_active(lic.id) >= lic.max_activations:
            raise LicensingError(
                ErrorCode.NO_ACTIVATIONS_LEFT,
                f"activation {act.id} was released after its broker went silent, and all "
                f"{lic.max_activations} activation(s) of license {lic.id} are in use now",
            )
        tx.update_activation(act.id, freed_at=None, freed_reason=None)
        self.ctx.event(tx, "activation.created", activation_id=act.id, license_id=lic.id, label=act.label, revived=True)
        log.info("activation %s taken back by its instance after a release", act.id)
        return replace(act, freed_at=None, freed_reason=None)

    def verdict(self, act: ActivationRecord, request: InstanceRequest, exc: LicensingError) -> bytes:
        """Only ever called with a request verified against ``act``'s key on record."""
        return Verdict(
            verdict=str(exc.code),
            activation_id=act.id,
            instance_fingerprint=act.instance_fingerprint,
            request_nonce=request.nonce,
            issued_at=self.ctx.clock(),
            message=exc.message,
        ).sign(self.ctx.signing_key)

    def _once(self, tx: Tx, scope: str, request: InstanceRequest, now: int) -> None:
        fresh_once(
            request, now, self.ctx.max_clock_skew, lambda: tx.remember_nonce(scope, request.nonce, request.created_at)
        )
        # Pruning is housekeeping, not protection (a request older than the clock window is
        # refused by check_fresh anyway): once a second per process, not on every request.
        if now != self._nonces_pruned_at:
            self._nonces_pruned_at = now
            tx.prune_nonces(now - self.ctx.max_clock_skew - 1)

    def deactivate(self, request: bytes) -> None:
        """Free the activation named by a deactivate request signed with its instance key."""
        now = self.ctx.clock()
        with self.ctx.store.transaction() as tx:
            act, req = self.ctx.verify_known(tx, request, labels.KIND_DEACTIVATE)
            self._once(tx, act.id, req, now)
            if not act.active:
                raise LicensingError(
                    ErrorCode.ALREADY_FREE,
                    f"activation {act.id} is already free ({act.freed_reason}, {iso(act.freed_at)})",
                )
            self.ctx.free(tx, act, now, "deactivated")
        log.info("activation %s of %s deactivated", act.id, act.license_id)

    def record_trial(self, request: bytes, client: str = "local") -> bytes:
        """a signed TrialRecord of when the vendor first saw this instance on trial.

        Self-signed (no activation exists yet), fresh and accepted once. The earliest of the
        instance's own claim (``created_at``) and the first record wins. Anyone can make
        identities, so new ones are limited per source: a burst per window, a total quota."""
        now = self.ctx.clock()
        req = open_instance_request(request, labels.KIND_TRIAL)
        with self.ctx.store.transaction() as tx:
            self._once(tx, "trial:" + req.fingerprint, req, now)
            started = tx.trial_started(req.fingerprint)
            if started is None:
                self._count_new_trial(tx, client, now)
                started = min(now, req.created_at)
                tx.insert_trial(req.fingerprint, started, client)
                # where the vendor learns of a trial: once per instance, in the insert's transaction
                self.ctx.event(tx, "trial.started", instance_fingerprint=req.fingerprint, started_at=iso(started))
        return TrialRecord(
            instance_fingerprint=req.fingerprint, trial_started_at=started, request_nonce=req.nonce, issued_at=now
        ).sign(self.ctx.signing_key)

    def _count_new_trial(self, tx: Tx, client: str, now: int) -> None:
        start, count = tx.lock_rate("trial:" + client, now)
        if now - start >= self.ctx.rate_limit_window:
            start, count = now, 0
        if count >= self.ctx.trial_limit_burst or tx.count_trials_from(client) >= self.ctx.trial_limit_total:
            raise LicensingError(
                ErrorCode.RATE_LIMITED,
                f"too many new trial instances from {client}; the local trial records stand",
            )
        tx.put_rate("trial:" + client, start, count + 1)

    def floating_activate(self, license_key: Any, request: bytes, client: str = "local") -> ActivationResult:
        lic, act, reused, now, defs = self._first_contact(
            license_key, request, client, labels.KIND_FLOATING_ACTIVATE, LicenseModel.FLOATING
        )
        valid_until = now + self.ctx.certificate_lifetime
        cert = self.ctx.floating_certificate(lic, act, now, valid_until=valid_until, definitions=defs)
        return ActivationResult(cert, act.id, lic.id, reused)

    def floating_check_in(self, request: bytes) -> bytes:
        """As :meth:`check_in` for a floating server: a certificate valid for ``certificate_lifetime``
        (the server refreshes it daily), signed verdicts, and the check-in chain (a copied data folder)."""
        lic, act, now, defs = self._refresh(
            request, labels.KIND_FLOATING_CHECK_IN, LicenseModel.FLOATING, verdicts=True
        )
        valid_until = now + self.ctx.certificate_lifetime
        return self.ctx.floating_certificate(lic, act, now, valid_until=valid_until, definitions=defs)

    # -- rate limiting of failed key lookups --------------------------------------
    def _check_rate(self, client: str, now: int, tx: Tx | None = None) -> None:
        if tx is None:  # the early refusal: a read, nothing written
            with self.ctx.store.transaction() as own:
                rate = own.get_rate(client)
        else:  # in the lookup's transaction: locked, so the check and the count are one step
            rate = tx.lock_rate(client, now)
        if rate is not None:
            start, failures = rate
            wait = self.ctx.rate_limit_window - (now - start)
            if wait > 0 and failures >= self.ctx.rate_limit_failures:
                raise LicensingError(
                    ErrorCode.RATE_LIMITED, f"too many failed license keys from {client}; retry in {wait} s"
                )

    def _record_failure(self, client: str, now: int, tx: Tx | None = None) -> None:
        if tx is None:
            with self.ctx.store.transaction() as own:
                self._record_failure(client, now, own)
            return
        rate = tx.lock_rate(client, now)
        if rate is None or now - rate[0] >= self.ctx.rate_limit_window:
            tx.put_rate(client, now, 1)
            tx.prune_rates(now - 10 * self.ctx.rate_limit_window)
        else:
            tx.put_rate(client, rate[0], rate[1] + 1)

    # Per key: refusals of one existing key, whatever the source, so one key cannot be
    # hammered from many networks; a row of its own in rate_limits ("key:<digest>"), locked like a
    # source's, so the count is exact across replicas. Successful activations are not counted: a
    # fleet activating one volume key is no attack, and each success uses up an activation.
    def _check_key(self, tx: Tx, digest: str, now: int) -> None:
        start, failures = tx.lock_rate("key:" + digest, now)
        wait = self.ctx.rate_limit_window - (now - start)
        if wait > 0 and failures >= self.ctx.rate_limit_key_failures:
            raise LicensingError(
                ErrorCode.RATE_LIMITED, f"too many refused activations of this license key; retry in {wait} s"
            )

    def _count_key_failure(self, tx: Tx, digest: str, now: int) -> None:
        start, failures = tx.lock_rate("key:" + digest, now)
        if now - start >= self.ctx.rate_limit_window:
            tx.put_rate("key:" + digest, now, 1)
            tx.prune_rates(now - 10 * self.ctx.rate_limit_window)
        else:
            tx.put_rate("key:" + digest, start, failures + 1)

    # -- first contact --------------------------------------------------------------
    def _first_contact(
        self, license_key: Any, blob: bytes, client: str, kind: str, model: LicenseModel
    ) -> tuple[LicenseRecord, ActivationRecord, bool, int, Defs]:
        now = self.ctx.clock()
        self._check_rate(client, now)
        try:
            digest = key_digest(license_key)
        except LicensingError as exc:
            if exc.code == ErrorCode.INVALID_KEY:
                self._record_failure(client, now)
            raise
        request = open_instance_request(blob, kind)
        check_fresh(request, now, self.ctx.max_clock_skew)
        if request.key_digest != digest:
            raise bad("the signed request is for another license key than the one sent")

        def work(tx: Tx) -> tuple[LicenseRecord | None, Any, LicensingError | None]:
            # Checked again and counted in the lookup's own transaction: concurrent guesses from
            # one source cannot all pass the check above before any of them is counted.
            self._check_rate(client, now, tx)
            self._once(tx, digest, request, now)
            lic = tx.get_license_by_digest(digest, lock=True)
            if lic is None:
                self._record_failure(client, now, tx)
                return None, None, None
            self._check_key(tx, digest, now)
            try:
                self.ctx.check_usable(lic, now, model)
                act, reused = self.ctx.bind(tx, lic, request, now)
                return lic, (act, reused, self.ctx.definitions(tx, lic)), None
            except LicensingError as exc:  # nothing written yet: commit the count, then refuse
                self._count_key_failure(tx, digest, now)
                return lic, None, exc

        lic, bound, refused = self.ctx.store.write(work)  # group commit: a fleet rolling out shares flushes
        if refused is not None:
            raise refused
        if lic is None or bound is None:
            raise LicensingError(ErrorCode.KEY_NOT_FOUND, "this license key is not known to the vendor")
        act, reused, defs = bound
        log.info(
            "%s %s of %s for instance %s",
            "re-activation" if reused else "activation",
            act.id,
            lic.id,
            act.instance_fingerprint,
        )
        return lic, act, reused, now, defs

    def _refresh(
        self, blob: bytes, kind: str, model: LicenseModel, *, verdicts: bool = False
    ) -> tuple[LicenseRecord, ActivationRecord, int, Defs]:
        def answer(
            lic: LicenseRecord, act: ActivationRecord, now: int, defs: Defs
        ) -> tuple[LicenseRecord, ActivationRecord, int, Defs]:
            return lic, act, now, defs

        return self._refresh_job(blob, kind, model, answer, verdicts=verdicts).run(self.ctx.store)

    def _refresh_job(
        self, blob: bytes, kind: str, model: LicenseModel, answer: Answer[T], *, verdicts: bool = True
    ) -> Job[Any, T]:
        now = self.ctx.clock()
        verified: list[tuple[ActivationRecord, InstanceRequest]] = []
        # Verified here, outside the batch's transaction, when the activation's key is known.
        presented = self.ctx.keys.present(blob, kind)

        def work(tx: Tx) -> tuple[LicenseRecord, ActivationRecord, bool, Defs]:
            act, request = self.ctx.verify_known(tx, presented, kind)
            verified.append((act, request))
            if kind == labels.KIND_REVIVE:  # a stale or replayed one is refused below: all rolled back
                act = self._take_back(tx, act, now)
            lic, act, suspend = self._refresh_verified(tx, act, request, model, now)
            return lic, act, suspend, self.ctx.definitions(tx, lic)

        def finish(done: tuple[LicenseRecord, ActivationRecord, bool, Defs]) -> T:
            # Once the transaction is durable (the group commit: answered once the batch holding it committed).
            lic, act, suspend, defs = done
            if suspend:  # raised once the clone mark is committed: both copies get the verdict from now on
                raise cloned_error(act)
            return answer(lic, act, now, defs)

        def failed(exc: Exception) -> None:  # a refusal of a request verified against the key on record
            if verdicts and isinstance(exc, LicensingError) and exc.code.is_verdict and verified:
                exc.evidence = self.verdict(verified[0][0], verified[0][1], exc)

        return Job(work, finish, failed)

    def _refresh_verified(
        self, tx: Tx, act: ActivationRecord, request: InstanceRequest, model: LicenseModel, now: int
    ) -> tuple[LicenseRecord, ActivationRecord, bool]:
        self._once(tx, act.id, request, now)
        if not act.active:
            raise gone_error(act)
        if act.model != model:
            raise LicensingError(
                ErrorCode.WRONG_MODEL, f"activation {act.id} is {act.model}, it cannot check in as {model}"
            )
        lic = self.ctx.license(tx, act.license_id, lock=True)
        self.ctx.check_usable(lic, now, None)
        updates: dict[str, Any] = {"last_check_in_at": now}
        updates.update(names.changed(tx.conn, act.id, act.label, request.label, now))
        if model == LicenseModel.ONLINE:  # the certificate it gets now carries the terms (or none)
            updates["last_heartbeat_at"] = told_heartbeats(lic, now)
        step = follow_chain(lic, act, request.chain, now) if model != LicenseModel.OFFLINE else None
        if step is not None:
            updates.update(step.updates)
            if updates.get("clone_count", act.clone_count) > act.clone_count:
                self.ctx.event(
                    tx, "activation.cloned", activation_id=act.id, license_id=lic.id, policy=lic.clone_policy
                )
        tx.update_activation(act.id, **updates)
        return lic, replace(act, **updates), step is not None and step.suspend
