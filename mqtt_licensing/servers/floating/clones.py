"""Cloned leases under the pool's ``suspend`` policy.

Two instances renewing one lease (a copied state folder) diverge on the lease's renewal chain
(:func:`.._requests.chain_step`); the pool flags it (``flag``, the default) or, with ``suspend``
(``mqtt-licensing floating allow --clone-policy suspend``), ends the lease and refuses that
instance fingerprint from then on, until ``floating allow --unsuspend FP``. Each refusal carries a
:class:`Verdict` signed by this server's key (the key the vendor's floating certificate names),
bound to the lease, the instance and the refused request's nonce: the agent drops its lease on
that and on nothing less, so nobody on the path can stop a broker with an unsigned error.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...core.documents import InstanceRequest, Verdict
from ...core.errors import ErrorCode, LicensingError
from .._requests import chain_step
from .lease_rows import LeaseRecord

log = logging.getLogger(__name__)

POLICIES = ("flag", "suspend")


def follow_chain(lease: LeaseRecord, presented: str | None, now: int) -> dict[str, Any]:
    """The lease's next renewal chain; two instances renewing one lease are flagged."""
    chain, previous, diverged = chain_step(lease.chain, lease.chain_prev, presented)
    if not diverged:
        return {"chain": chain, "chain_prev": previous}
    log.warning(
        "lease %s is renewed by more than one instance %s (a copied state folder; clone %d)",
        lease.lease_id,
        lease.instance_fingerprint,
        lease.clone_count + 1,
    )
    return {
        "chain": chain,
        "chain_prev": None,
        "cloned_at": lease.cloned_at or now,
        "clone_count": lease.clone_count + 1,
    }


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"clone policy must be one of {', '.join(POLICIES)}")
    return policy


def cloned(signing_key: Ed25519PrivateKey, lease_id: str, request: InstanceRequest, now: int) -> LicensingError:
    """The refusal for ``request`` (verified against the instance's own key) of a suspended instance."""
    message = (
        f"lease {lease_id} was renewed by two instances with one identity (a copied state folder) and the pool's "
        "clone policy is suspend; the floating server's operator lifts it with: floating allow --unsuspend "
        + request.fingerprint
    )
    evidence = Verdict(
        verdict=str(ErrorCode.CLONED),
        activation_id=lease_id,
        instance_fingerprint=request.fingerprint,
        request_nonce=request.nonce,
        issued_at=now,
        message=message,
    ).sign(signing_key)
    return LicensingError(ErrorCode.CLONED, message, evidence=evidence)


__all__ = ["POLICIES", "check_policy", "cloned", "follow_chain"]
