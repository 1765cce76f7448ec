"""Password checks (agent/credentials.py): one slow hash per username and password, a keyed
in-memory match after that, backoff after failures, and an unknown name costs a known one."""

from __future__ import annotations

import asyncio
import threading
import time

from mqtt_licensing.agent import credentials as credentials_module
from mqtt_licensing.agent.credentials import BACKOFF_FREE, Credentials
from mqtt_licensing.core.passwords import hash_password

HASH = hash_password("right", n=2**12)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_slow_hash_runs_once_then_the_digest_matches():
    creds = Credentials({"alice": HASH})
    assert await creds.check("alice", "right")
    assert await creds.check("alice", "right")
    assert creds.slow_checks == 1
    assert not await creds.check("alice", "wrong")  # a wrong password is never matched by the cache
    assert creds.slow_checks == 2
    creds.close()


async def test_nothing_weaker_than_the_hash_is_kept():
    creds = Credentials({"alice": HASH})
    assert await creds.check("alice", "right")
    kept = repr(creds._cache) + repr(vars(creds))
    assert "right" not in kept
    creds.close()


async def test_the_cache_expires_and_follows_a_changed_hash():
    clock = Clock()
    creds = Credentials({"alice": HASH}, clock=clock, cache_seconds=60)
    assert await creds.check("alice", "right")
    clock.now += 61
    assert await creds.check("alice", "right")
    assert creds.slow_checks == 2
    creds._hashes["alice"] = hash_password("new", n=2**10)
    assert not await creds.check("alice", "right")
    creds.close()


async def test_unknown_username_runs_a_dummy_hash_of_the_same_cost():
    creds = Credentials({"alice": hash_password("right")})  # production cost, so time is measurable
    assert not await creds.check("alice", "wrong")  # warms the pool
    assert not await creds.check("nobody", "x")  # builds the dummy hash once
    known: list[float] = []
    unknown: list[float] = []
    for i in range(3):
        for name, times in (("alice", known), (f"ghost{i}", unknown)):
            started = time.perf_counter()
            assert not await creds.check(name, f"wrong{i}")
            times.append(time.perf_counter() - started)
    # Without the dummy hash an unknown name answers in microseconds, a known one in ~50 ms.
    assert min(unknown) > 0.3 * min(known), (known, unknown)
    creds.close()


async def test_backoff_locks_out_the_guesser_not_the_account(monkeypatch):
    monkeypatch.setattr(credentials_module, "TARPIT_MAX", 0.0)  # the fake clock does not move while held
    clock = Clock()
    creds = Credentials({"alice": HASH, "bob": HASH}, clock=clock, cache_seconds=0)  # no cache: every check hashes
    for _ in range(BACKOFF_FREE + 1):
        assert not await creds.check("alice", "wrong", "10.0.0.1")
    hashed = creds.slow_checks
    assert not await creds.check("alice", "wrong", "10.0.0.1")  # this guesser backs off
    assert not await creds.check("bob", "right", "10.0.0.1")  # and so does its address
    assert creds.slow_checks == hashed  # refused without hashing
    assert await creds.check("alice", "right", "10.0.0.2")  # the real alice, elsewhere, is let in
    assert await creds.check("bob", "right", "10.0.0.3")
    clock.now += 60
    assert await creds.check("alice", "right", "10.0.0.1")
    creds.close()


async def test_a_name_guessed_from_many_addresses_keeps_a_small_budget_and_its_known_good_logins(monkeypatch):
    monkeypatch.setattr(credentials_module, "TARPIT_MAX", 0.0)
    clock = Clock()
    creds = Credentials({"alice": HASH}, clock=clock, cache_seconds=0)
    assert await creds.check("alice", "right", "10.0.0.2")  # alice's own address: known-good from now on
    for i in range(BACKOFF_FREE + 1):
        assert not await creds.check("alice", "wrong", f"10.1.0.{i}")
    hashed = creds.slow_checks
    results = [await creds.check("alice", "wrong", f"10.2.0.{i}") for i in range(50)]  # 50 more addresses
    assert not any(results)
    assert creds.slow_checks - hashed <= 2  # USERNAME_BUDGET, not 50 hashes
    assert await creds.check("alice", "right", "10.0.0.2")  # the known-good pair is never budgeted
    creds.close()


async def test_a_verified_password_passes_during_backoff(monkeypatch):
    monkeypatch.setattr(credentials_module, "TARPIT_MAX", 0.0)
    clock = Clock()
    creds = Credentials({"alice": HASH, "bob": HASH}, clock=clock)
    assert await creds.check("bob", "right", "10.0.0.1")
    for _ in range(BACKOFF_FREE + 3):
        await creds.check("bob", "wrong", "10.0.0.1")
    assert await creds.check("bob", "right", "10.0.0.1")  # a flood from its own address locks nobody out
    creds.close()


async def test_identical_concurrent_checks_share_one_hash():
    creds = Credentials({"alice": HASH})
    results = await asyncio.gather(*(creds.check("alice", "right") for _ in range(20)))
    assert all(results) and creds.slow_checks == 1
    creds.close()


async def test_slow_checks_use_their_own_threads():
    creds = Credentials({"alice": HASH}, workers=1)
    seen: list[str] = []
    original = creds._verify

    def recording(password, encoded):
        seen.append(threading.current_thread().name)
        return original(password, encoded)

    creds._verify = recording  # type: ignore[method-assign]  # records which thread runs the check
    assert await creds.check("alice", "right")
    assert seen and seen[0].startswith("password-check"), seen
    creds.close()


async def test_waiting_checks_are_bounded():
    creds = Credentials({"alice": hash_password("right")}, workers=1, max_pending=2)
    results = await asyncio.gather(*(creds.check("alice", f"wrong{i}", f"10.0.0.{i}") for i in range(6)))
    assert not any(results) and creds.slow_checks == 2  # the rest were refused at once
    creds.close()


async def test_the_dummy_hash_costs_what_the_costliest_common_entry_costs():
    creds = Credentials({"cheap": hash_password("a", n=2**10), "admin": hash_password("b", n=2**14)})
    assert creds._dummy_hash().startswith("scrypt$16384$")
    creds.close()


async def test_a_refusal_during_backoff_is_held_until_the_block_ends():
    creds = Credentials({"alice": HASH})
    for _ in range(BACKOFF_FREE + 1):
        assert not await creds.check("alice", "wrong", "10.0.0.1")
    started = time.monotonic()
    assert not await creds.check("alice", "wrong", "10.0.0.1")
    assert time.monotonic() - started >= 0.2  # the first block is 0.25 s: a flood waits, not spins
    creds.close()
