"""Clone detection for online activations: the check-in chain.

Every certificate the vendor signs for an online activation carries a fresh secret (``chain``);
the next check-in must present it. A copied state folder holds the same secret, so once one
copy checks in, the other presents a secret the vendor has moved past: two instances on one
activation diverge within two check-ins, and the vendor sees it.

The previous secret is accepted once more while the current one was never presented: an
answer lost on the way back must not look like a clone. Two copies cannot both use that: the
first one to present the newer secret moves the previous one out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ...core.errors import ErrorCode, LicensingError
from ...core.timefmt import iso
from .._requests import chain_step
from .store import ActivationRecord, LicenseRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainStep:
    updates: dict[str, Any]  # for the activation row
    suspend: bool  # refuse with a signed ``cloned`` verdict (after the updates are committed)


def follow_chain(lic: LicenseRecord, act: ActivationRecord, presented: str | None, now: int) -> ChainStep:
    """The activation's next chain, and whether the check-in presenting ``presented`` is refused."""
    chain, previous, diverged = chain_step(act.chain, act.chain_prev, presented)
    updates: dict[str, Any] = {"chain": chain, "chain_prev": previous}
    if diverged:
        updates.update(cloned_at=act.cloned_at or now, clone_count=act.clone_count + 1)
        log.warning(
            "activation %s of %s is used by more than one instance (clone %d, first seen %s; policy %s)",
            act.id,
            lic.id,
            updates["clone_count"],
            iso(updates["cloned_at"]),
            lic.clone_policy,
        )
    cloned = updates.get("cloned_at", act.cloned_at) is not None
    return ChainStep(updates, suspend=cloned and lic.clone_policy == "suspend")


def cloned_error(act: ActivationRecord) -> LicensingError:
    return LicensingError(
        ErrorCode.CLONED,
        f"activation {act.id} is used by more than one instance (a copied state folder); the vendor "
        "suspended it: ask the vendor to free it, then activate the one instance that should keep it",
    )


__all__ = ["ChainStep", "cloned_error", "follow_chain"]
