"""Checks both servers make on the signed requests instances send them."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from ..core.documents import InstanceRequest
from ..core.errors import ErrorCode, LicensingError
from ..core.signing import Envelope, parse_envelope
from ..core.timefmt import iso

MAX_CLOCK_SKEW = 600  # seconds between a request's created_at and the server clock


def check_fresh(request: InstanceRequest, now: int, max_clock_skew: int = MAX_CLOCK_SKEW) -> None:
    """Refuse a request made too far from the server's time: a wrong clock, or a replay."""
    skew = request.created_at - now
    if abs(skew) > max_clock_skew:
        raise LicensingError(
            ErrorCode.BAD_REQUEST,
            f"the request was made {abs(skew)} s {'ahead of' if skew > 0 else 'behind'} the server's time "
            f"({iso(now)}, at most {max_clock_skew} s apart): the instance's clock is off, or the request "
            f"is a replay; fix the clock and retry",
        )


def peek_request(blob: bytes) -> InstanceRequest:
    """The request as it claims to be, *unverified*: only to find the key on record to verify it with."""
    return peek(blob)[1]


def peek(blob: bytes) -> tuple[Envelope, InstanceRequest]:
    """:func:`peek_request` and the parsed envelope, for ``core.documents.check_instance_request``."""
    env = parse_envelope(blob)
    return env, InstanceRequest.from_body(env.unverified_body())


def fresh_once(request: InstanceRequest, now: int, max_clock_skew: int, remember: Callable[[], bool]) -> None:
    """:func:`check_fresh`, then ``remember()`` the nonce (in the caller's transaction): a request
    is accepted once within the window its ``created_at`` allows, and never after it."""
    check_fresh(request, now, max_clock_skew)
    if not remember():
        raise replayed()


def chain_step(current: str | None, previous: str | None, presented: str | None) -> tuple[str, str | None, bool]:
    """One step of a check-in chain: ``(new secret, new previous, diverged)``.

    Each answer carries a fresh secret that the next check-in or renewal presents. Two copies of
    one identity hold the same secret; once one of them moves on, the other presents an old one:
    they diverged. The previous secret is accepted once more while the current one was never
    presented (an answer lost on the way back is not a clone); a record from before chains
    starts one. A client that never presented one (an agent from before chains) is not taken for
    a clone, but once a chain was presented (``previous`` is set) one is required from then on:
    a copy leaving the field out is a second instance."""
    new = secrets.token_hex(16)
    if presented is None:
        if previous is not None:
            return new, None, True
        return current or new, previous, False  # nothing presented yet: an agent from before chains
    if current is None or presented == current:
        return new, current, False
    if presented is not None and presented == previous:
        return new, previous, False
    return new, None, True


def replayed() -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, "this request was already used (replay): sign a new one")


__all__ = ["MAX_CLOCK_SKEW", "chain_step", "check_fresh", "fresh_once", "peek", "peek_request", "replayed"]
