"""Who may take a new seat of the pool.

Main: anyone who could reach the floating server could make fresh instance identities and
lease every seat (5 of 5 in 0.06 s); the real brokers went ``unlicensed``. A pool with access
rules (``mqtt-licensing floating allow``) gives a *new* seat only to

* an instance presenting the pool's join token (``floating_join_token`` in the broker config),
* an allowed instance fingerprint, or
* a request from an allowed source network;

a lease already held renews as before, and an instance the pool has leased to before keeps its
place across its own restarts: a broker gives its seat back at a clean shutdown, so without a
memory of it (rows of kind ``leased``, never shown as rules) the same broker would come back as a
stranger. ``floating allow --remove --fingerprint`` forgets it too. A new pool gets a join-token
rule when the CLI first provisions it (``floating activate``/``install`` print the token), so it
is closed from the start; a pool provisioned before that, without rules, stays open: ``floating
status`` warns. Independently, ``--new-identities-per-minute`` limits how many identities one
source address may bring into the pool per minute.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from ...core.errors import ErrorCode, LicensingError
from .._proxies import parse_networks
from .schema import pool_access

KINDS = ("token", "fingerprint", "network")
# Not an operator rule: an instance fingerprint this pool has leased to (same table, own kind).
LEASED = "leased"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_join_token() -> str:
    return "mqlj_" + secrets.token_urlsafe(24)


def normalized_rule(kind: str, value: str) -> str:
    """The stored form of a rule; a bad value names itself."""
    if kind == "network":
        return str(parse_networks(value)[0]) if value.strip() else _bad(f"{value!r} is not a network")
    if kind == "fingerprint":
        fp = value.strip().lower()
        if len(fp) != 32 or any(c not in "0123456789abcdef" for c in fp):
            _bad(f"{value!r} is not an instance fingerprint (32 hex characters, `mqtt-licensing status`)")
        return fp
    if kind == "token":
        return token_digest(value)
    return _bad(f"unknown rule kind {kind!r}")


def admits(rules: Sequence[tuple[str, str]], *, fingerprint: str, source: str, join_token: str | None) -> bool:
    if not rules:
        return True
    for kind, value in rules:
        if kind == "fingerprint" and value == fingerprint:
            return True
        if kind == "token" and join_token and secrets.compare_digest(value, token_digest(join_token)):
            return True
        if kind == "network" and _in_network(source, value):
            return True
    return False


_LEASED_BEFORE = sa.select(pool_access.c.kind).where(
    pool_access.c.kind == LEASED, pool_access.c.value == sa.bindparam("b_fp")
)
_REMEMBER = sa.insert(pool_access)


def leased_before(tx: Any, fingerprint: str) -> bool:
    return tx.conn.execute(_LEASED_BEFORE, {"b_fp": fingerprint}).first() is not None


def remember(tx: Any, fingerprint: str, now: int, *, known: bool | None = None) -> None:
    """Record that ``fingerprint`` held a lease here (its requests were signed by that key);
    ``known``: whether it was, when the caller just read it."""
    if not (leased_before(tx, fingerprint) if known is None else known):
        tx.conn.execute(_REMEMBER, {"kind": LEASED, "value": fingerprint, "created_at": now})


def remembered_count(tx: Any) -> int:
    query = sa.select(sa.func.count()).select_from(pool_access).where(pool_access.c.kind == LEASED)
    return int(tx.conn.execute(query).scalar_one())


def forget(tx: Any, fingerprint: str) -> bool:
    done = tx.conn.execute(
        sa.delete(pool_access).where(pool_access.c.kind == LEASED, pool_access.c.value == fingerprint)
    )
    return bool(done.rowcount)


def refused() -> LicensingError:
    return LicensingError(
        ErrorCode.NOT_AUTHORIZED,
        "this floating pool admits new instances only with its join token (floating_join_token in the broker "
        "config) or when allowed by fingerprint or network (mqtt-licensing floating allow)",
    )


class NewIdentityLimit:
    """At most ``per_minute`` new identities per source address per minute (in this process)."""

    def __init__(self, per_minute: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, source: str) -> None:
        """Count one new identity from ``source``; RATE_LIMITED beyond the limit."""
        if self.per_minute is None:
            return
        now = self._clock()
        with self._lock:
            seen = self._seen[source]
            while seen and now - seen[0] >= 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                raise LicensingError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {self.per_minute} new instances from {source} in a minute; retry later",
                )
            seen.append(now)


def _in_network(address: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _bad(message: str) -> str:
    raise LicensingError(ErrorCode.INVALID_FIELD, message)


__all__ = [
    "KINDS",
    "LEASED",
    "NewIdentityLimit",
    "admits",
    "forget",
    "leased_before",
    "new_join_token",
    "normalized_rule",
    "refused",
    "remember",
    "remembered_count",
    "token_digest",
]
