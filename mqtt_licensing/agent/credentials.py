"""Password checks at amqtt speed, with nothing weaker than the configured hashes on disk.

The slow hash (scrypt, or Mosquitto's PBKDF2) is verified once; a later CONNECT with the same
username and password is matched against an HMAC of them under a key that lives only in this
process, kept for ``cache_seconds`` and only while that username's configured hash is unchanged
(a config change drops it). Slow checks run on their own small thread pool, so state saves and
the rest of the broker never queue behind a password flood, and at most ``max_pending`` of them
wait at a time. An unknown username is checked against a dummy hash of the configured kind, so it
costs what a known one costs.

Backoff locks out the guesser, not the account: after a few failures a (username, source address)
pair, and a source address on its own, back off exponentially; while blocked an uncached attempt
is refused without hashing, and only when the block ends (at most ``TARPIT_MAX`` later), so a flood
waits instead of spinning. A username failing from many addresses keeps a small budget of real
checks (``USERNAME_BUDGET``) instead of a lock, so the real admin, from another address, still gets
in. A (username, address) pair that logged in before is known-good: no username or address block
applies to it, and its checks run on a worker of their own, never queued behind strangers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..core.passwords import dummy_hash_like, verify_password
from .flood import Buckets

log = logging.getLogger(__name__)

CACHE_SECONDS = 3600.0
# A few mistakes are free (a typo, a retrying client); then 0.25 s, 0.5 s, 1 s ... 30 s at most.
BACKOFF_FREE, BACKOFF_FIRST, BACKOFF_MAX = 3, 0.25, 30.0
# A CONNECT refused during backoff is answered after at most this long (until the block ends):
# a flooding client then waits instead of costing the broker hundreds of refusals a second.
TARPIT_MAX = 2.0
_MAX_TRACKED = 4_096  # usernames/addresses remembered for backoff (a flood of fresh names stays bounded)
# Real checks a username failing from many addresses still gets: 2 at once, then one per 2 s.
USERNAME_BUDGET, USERNAME_REFILL = 2, 2.0
_MAX_KNOWN_GOOD = 10_000  # (username, address) pairs that logged in, most recent kept


@dataclass
class _Failures:
    count: int
    until: float


class Backoff:
    """Consecutive failures per key (a username, an address); blocked after the free ones."""

    def __init__(self) -> None:
        self._keys: dict[str, _Failures] = {}

    def blocked_for(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        entry = self._keys.get(key)
        return max(0.0, entry.until - now) if entry is not None else 0.0

    def failed(self, key: str, now: float) -> None:
        entry = self._keys.pop(key, None)  # re-inserted last: the dict stays ordered by last failure
        count = entry.count + 1 if entry is not None else 1
        delay = 0.0 if count <= BACKOFF_FREE else min(BACKOFF_FIRST * 2 ** (count - BACKOFF_FREE - 1), BACKOFF_MAX)
        self._keys[key] = _Failures(count, now + delay)
        if len(self._keys) > _MAX_TRACKED:
            self._keys.pop(next(iter(self._keys)))

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)


class Credentials:
    def __init__(
        self,
        hashes: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
        workers: int = 2,
        max_pending: int = 64,
    ) -> None:
        self._hashes = dict(hashes)
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._key = os.urandom(32)  # per process: a digest is useless outside it
        self._cache: dict[str, tuple[bytes, str, float]] = {}  # username -> (digest, hash it matched, expiry)
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="password-check")
        # Known-good pairs are checked here: a flood of strangers fills the other queue, not this one.
        self._trusted = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check-known")
        self._max_pending = max_pending
        self._pending = 0
        self._backoff = Backoff()
        self._budget = Buckets(USERNAME_BUDGET, USERNAME_REFILL)
        self._known_good: dict[tuple[str, str], None] = {}  # insertion-ordered: the oldest go first
        self._dummy: str | None = None
        self.slow_checks = 0  # for tests and benchmarks: how many slow hashes were run

    def knows(self, username: str) -> bool:
        return username in self._hashes

    async def check(self, username: str, password: str, peer: str | None = None) -> bool:
        encoded = self._hashes.get(username)
        digest = hmac.new(self._key, username.encode() + b"\0" + password.encode(), hashlib.sha256).digest()
        now = self._clock()
        cached = self._cache.get(username)
        if (
            encoded is not None
            and cached is not None
            and cached[1] == encoded
            and now < cached[2]
            and hmac.compare_digest(cached[0], digest)
        ):
            return True
        pair = f"p:{username}\0{peer}" if peer else "u:" + username
        known = peer is not None and (username, peer) in self._known_good
        wait = self._blocked(username, pair, peer, known, now)
        if wait > 0:
            await asyncio.sleep(min(wait, TARPIT_MAX))
            return False  # refused unhashed
        shared = self._inflight.get(digest)
        if shared is not None:  # the same username and password already being checked: one hash
            return await asyncio.shield(shared)
        if not known and self._pending >= self._max_pending:
            log.warning("refused a password check for %r: %d already waiting", username, self._pending)
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        self._pending += 0 if known else 1
        executor = self._trusted if known else self._executor
        try:
            ok = await asyncio.get_running_loop().run_in_executor(executor, self._verify, password, encoded)
        except BaseException:
            future.set_result(False)  # those sharing this check are refused, not cancelled
            raise
        finally:
            self._pending -= 0 if known else 1
            del self._inflight[digest]
        future.set_result(ok)
        now = self._clock()
        keys = list(dict.fromkeys([pair, "u:" + username] + (["a:" + peer] if peer else [])))
        if ok and encoded is not None:
            self._cache[username] = (digest, encoded, now + self._cache_seconds)
            for key in keys:
                self._backoff.succeeded(key)
            if peer is not None:
                self._remember_good(username, peer)
            return True
        # The cached digest stays: a wrong guess must not push the real user back onto the slow path.
        for key in keys:
            self._backoff.failed(key, now)
        return False

    def _blocked(self, username: str, pair: str, peer: str | None, known: bool, now: float) -> float:
        """Seconds to hold an attempt before refusing it unhashed; 0: check it."""
        wait = self._backoff.blocked_for(pair, now)  # this guesser: (username, address)
        if known or wait > 0:
            return wait
        if peer and (wait := self._backoff.blocked_for("a:" + peer, now)) > 0:
            return wait  # this address guesses many names
        wait = self._backoff.blocked_for("u:" + username, now)
        if wait > 0 and not self._budget.take(username, now):
            return wait  # the name fails from many places: only a few real checks a second
        return 0.0

    def _remember_good(self, username: str, peer: str) -> None:
        self._known_good.pop((username, peer), None)
        self._known_good[(username, peer)] = None
        if len(self._known_good) > _MAX_KNOWN_GOOD:
            self._known_good.pop(next(iter(self._known_good)))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._trusted.shutdown(wait=False, cancel_futures=True)

    def _verify(self, password: str, encoded: str | None) -> bool:
        self.slow_checks += 1
        if encoded is None:
            verify_password(password, self._dummy_hash())
            return False
        return verify_password(password, encoded)

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            # The scheme most entries use, at the highest cost among them: an unknown name costs
            # what those known names cost (with mixed kinds or costs, the cheaper ones stand out).
            by_scheme = Counter(_scheme(h) for h in self._hashes.values())
            common = by_scheme.most_common(1)[0][0] if by_scheme else ""
            model = max((h for h in self._hashes.values() if _scheme(h) == common), key=_cost, default="")
            self._dummy = dummy_hash_like(model)
        return self._dummy


def _scheme(encoded: str) -> str:
    return encoded.split("$", 2)[1] if encoded.startswith("$") else encoded.split("$", 1)[0]


def _cost(encoded: str) -> int:
    """scrypt: n x r x p; PBKDF2 ($7$): iterations; anything unreadable counts as cheapest."""
    parts = encoded.split("$")
    try:
        if encoded.startswith("scrypt$"):
            return int(parts[1]) * int(parts[2]) * int(parts[3])
        if encoded.startswith("$7$"):
            return int(parts[2])
    except (ValueError, IndexError):
        pass
    return 0


__all__ = ["Backoff", "Credentials"]
