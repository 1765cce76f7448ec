"""Heartbeats, and the release of activations whose instance went silent.

A license may carry two terms (seconds): ``heartbeat_interval`` (how often its online instances
say they are alive) and ``release_after`` (an activation silent longer than that is released, so
a broker destroyed without deactivating - a kill -9'd container - gives its activation back by
itself; Chariot's page calls such an activation "permanently lost"). Without them nothing changes.

A heartbeat is cheap on purpose: one SELECT of the activation and its license, one UPDATE of
``last_heartbeat_at`` and a small signed :class:`HeartbeatAck` - no certificate, no nonce row.
It is still verified against the key on record and must be fresh; a replay inside the freshness
window can only say "alive" for an instance that said so a moment ago.

The release duty uses the *server's* clock and times the server itself wrote (``last_check_in_at``,
``last_heartbeat_at``), never the instance's clock, and frees with a conditional UPDATE, so a
heartbeat that arrives, late or not, before the row is released always keeps it.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from ...core import labels
from ...core.documents import HeartbeatAck, InstanceRequest
from ...core.errors import ErrorCode, LicensingError
from ...core.models import LicenseModel
from .._jobs import Job
from .._prepared import Prepared
from .._requests import check_fresh
from .instances import RELEASED_REASON, Instances, gone_error
from .records import ServiceContext, bad
from .schema import activations, licenses
from .store import ActivationRecord, LicenseRecord, Tx

log = logging.getLogger(__name__)

MAX_TERM = 366 * 86400  # a year: longer is no heartbeat
# The release duty's pace: the shortest heartbeat interval of a license with release terms, within
# these bounds (with none, it only looks for such a license, every PASS_MIN seconds).
PASS_MIN, PASS_MAX = 1.0, 60.0


def heartbeat_terms(
    model: str, interval: Any, release_after: Any, *, current: tuple[int | None, int | None] = (None, None)
) -> dict[str, int | None]:
    """Check the two terms (``current`` = the license's values, for a change of one of them).

    ``release_after`` must exceed two intervals: one heartbeat lost on the way never releases a
    live instance. 0 or None clears a term."""
    values = {"heartbeat_interval": interval, "release_after": release_after}
    for name, value in values.items():
        if (
            value is not None
            and value is not ...
            and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TERM)
        ):
            raise bad(f"{name} must be a whole number of seconds from 1 to {MAX_TERM}, or 0/null for none")
    hb = current[0] if interval is ... else (interval or None)
    release = current[1] if release_after is ... else (release_after or None)
    if release is not None and hb is None:
        raise bad("release_after needs a heartbeat_interval: without heartbeats every instance looks silent")
    if release is not None and hb is not None and release <= 2 * hb:
        raise bad(f"release_after ({release} s) must be more than 2 x heartbeat_interval ({2 * hb} s)")
    if (hb is not None or release is not None) and model != LicenseModel.ONLINE:
        raise bad("heartbeat terms apply to online licenses (floating leases expire by their TTL)")
    return {"heartbeat_interval": hb, "release_after": release}


class Heartbeats:
    """The heartbeat endpoint and the release duty's pass."""

    def __init__(self, ctx: ServiceContext, instances: Instances) -> None:
        self.ctx = ctx
        self.instances = instances
        self.next_pass = PASS_MIN  # seconds until the release duty's next pass

    def heartbeat(self, blob: bytes) -> bytes:
        """A signed ack valid until now + release_after; a signed verdict if the activation is gone
        (``released`` after a release) or the license no longer serves."""
        return self.heartbeat_job(blob).run(self.ctx.store)

    def heartbeat_job(self, blob: bytes) -> Job[tuple[ActivationRecord, InstanceRequest, LicenseRecord], bytes]:
        """:meth:`heartbeat` as a :class:`.._jobs.Job`: the server batches them on one thread, a
        fleet's heartbeats in one transaction (on SQLite; see :mod:`.._jobs`)."""
        now = self.ctx.clock()
        # Verified here, outside the batch's transaction, when the activation's key is known.
        presented = self.ctx.keys.present(blob, labels.KIND_HEARTBEAT)

        def work(tx: Tx) -> tuple[ActivationRecord, InstanceRequest, LicenseRecord]:
            act, request = self.ctx.verify_known(tx, presented, labels.KIND_HEARTBEAT)
            check_fresh(request, now, self.ctx.max_clock_skew)
            try:
                if act.model != LicenseModel.ONLINE:
                    raise LicensingError(ErrorCode.WRONG_MODEL, f"activation {act.id} is {act.model}: no heartbeats")
                lic = self.ctx.license(tx, act.license_id)
                if not act.active:
                    raise gone_error(act)
                self.ctx.check_usable(lic, now, None)
                if not HeartbeatQueries(tx.conn).touch(act.id, now):
                    fresh = tx.get_activation(act.id)
                    raise gone_error(fresh if fresh is not None else act)
            except LicensingError as exc:
                if exc.code.is_verdict:
                    exc.evidence = self.instances.verdict(act, request, exc)
                raise
            return act, request, lic

        def finish(done: tuple[ActivationRecord, InstanceRequest, LicenseRecord]) -> bytes:
            # Once the transaction holding the touch committed (the group commit: a fleet's
            # heartbeats share disk flushes), signed outside it.
            act, request, lic = done
            window = lic.release_after or self.ctx.certificate_lifetime
            return HeartbeatAck(
                activation_id=act.id,
                instance_fingerprint=act.instance_fingerprint,
                request_nonce=request.nonce,
                issued_at=now,
                valid_until=now + min(window, self.ctx.certificate_lifetime),
                # The certificate it holds predates a change of terms: check in for the new one.
                terms_changed=request.issued_at is not None and lic.updated_at > request.issued_at,
            ).sign(self.ctx.signing_key)

        return Job(work, finish)

    def release_silent(self) -> list[str]:
        """One pass of the release duty: free every live activation silent longer than its
        license's release_after, each with its ``activation.released`` event in the same transaction."""
        now = self.ctx.clock()
        released: list[str] = []
        with self.ctx.store.transaction() as tx:
            queries = HeartbeatQueries(tx.conn)
            shortest = queries.shortest_interval()
            self.next_pass = min(max(float(shortest or PASS_MIN), PASS_MIN), PASS_MAX)
            for activation_id, license_id in queries.silent(now) if shortest is not None else ():
                lic = tx.get_license(license_id, lock=True)  # serialize with activations counting it
                if lic is None or lic.release_after is None:
                    continue
                if queries.release(activation_id, now - lic.release_after, now):
                    self.ctx.event(
                        tx, "activation.released", activation_id=activation_id, license_id=license_id,
                        reason=RELEASED_REASON, silent_for=lic.release_after,
                    )  # fmt: skip
                    released.append(activation_id)
        for activation_id in released:
            log.info("activation %s released: no heartbeat for longer than its release_after", activation_id)
        return released


# The heartbeat's UPDATE, built once and run on the driver's cursor: SQLAlchemy's statement
# construction, and then its execution, cost more than running it (servers/_prepared.py).
_TOUCH = Prepared(
    activations.update()
    .where(activations.c.id == sa.bindparam("b_id"), activations.c.freed_at.is_(None))
    .values(last_heartbeat_at=sa.bindparam("b_now"))
)


class HeartbeatQueries:
    """The queries of heartbeats (beside the store's, as the catalogue's are)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    @staticmethod
    def _silent_since(cutoff: Any) -> Any:
        a = activations.c
        # NULL last_heartbeat_at (the instance holds no certificate with the terms: it was never
        # told to heartbeat) compares false: never released.
        return sa.and_(sa.func.coalesce(a.last_check_in_at, a.created_at) < cutoff, a.last_heartbeat_at < cutoff)

    def shortest_interval(self) -> int | None:
        """The shortest heartbeat interval of a license with release terms (None: no such license)."""
        lic = licenses.c
        query = sa.select(sa.func.min(lic.heartbeat_interval)).where(lic.release_after.is_not(None))
        value = self.conn.execute(query).scalar()
        return int(value) if value is not None else None

    def touch(self, activation_id: str, now: int) -> bool:
        """The heartbeat's one UPDATE; False when the activation was freed or released meanwhile."""
        return _TOUCH.rowcount(self.conn, {"b_id": activation_id, "b_now": now}) == 1

    def silent(self, now: int) -> list[tuple[str, str]]:
        """(activation, license) of live online activations silent longer than their license's
        release_after: the candidates, each released only if :meth:`release` still agrees."""
        a, lic = activations.c, licenses.c
        query = (
            sa.select(a.id, a.license_id)
            .select_from(activations.join(licenses, a.license_id == lic.id))
            .where(
                a.freed_at.is_(None),
                a.model == LicenseModel.ONLINE.value,
                lic.release_after.is_not(None),
                self._silent_since(now - lic.release_after),
            )
            .order_by(a.id)
        )
        return [(str(r[0]), str(r[1])) for r in self.conn.execute(query)]

    def release(self, activation_id: str, cutoff: int, now: int) -> bool:
        """Free the activation only if it is still live and silent since before ``cutoff``: the
        condition is the UPDATE's own, so a heartbeat committed a moment earlier (on any replica:
        PostgreSQL re-checks the WHERE once it holds the row) keeps it."""
        a = activations.c
        done = self.conn.execute(
            activations.update()
            .where(a.id == activation_id, a.freed_at.is_(None), self._silent_since(cutoff))
            .values(freed_at=now, freed_reason=RELEASED_REASON)
        )
        return done.rowcount == 1
