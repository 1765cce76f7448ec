"""HTTP load on the vendor activation server and the floating license server.

Every simulated instance is real: its own Ed25519 identity, a real activation (or
lease) on the server, and a freshly signed request for every call - exactly what
an agent sends. Requests are signed before the clock starts for that request, so
latencies are the server's (plus loopback HTTP), not the load generator's signing.

The no-op endpoint (``GET /v1/noop``) of the same server at the same concurrency is
the baseline: the ceiling of the stack (uvicorn, Starlette, a JSON response) with
no licensing work at all. The load generator is :mod:`.http_wire` (see there why
not httpx).
"""

from __future__ import annotations

import asyncio
import heapq
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.core.signing import b64

from .http_wire import Pool, Response


@dataclass
class LoadRound:
    """One closed-loop round: requests per second and latency percentiles (ms)."""

    rate: float
    p50_ms: float
    p99_ms: float
    ops: int


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def expect(response: Response, what: str, *codes: int) -> Any:
    if response.status not in (codes or (200,)):
        raise RuntimeError(f"{what} -> HTTP {response.status}: {response.body[:300]!r}")
    return response.json()


async def closed_loop(
    concurrency: int, duration: float, prepare: Callable[[int], Callable[[], Awaitable[Response]]]
) -> LoadRound:
    """``concurrency`` workers each send one request at a time until ``duration`` is over.

    ``prepare(worker)`` does the untimed part (signing) and returns the timed call.
    """
    deadline = time.perf_counter() + duration
    latencies: list[float] = []

    async def worker(n: int) -> None:
        while time.perf_counter() < deadline:
            call = prepare(n)
            start = time.perf_counter()
            response = await call()
            latencies.append(time.perf_counter() - start)
            expect(response, "load request")

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - start
    return LoadRound(
        len(latencies) / elapsed, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000, len(latencies)
    )


async def noop(pool: Pool, concurrency: int, duration: float) -> LoadRound:
    return await closed_loop(concurrency, duration, lambda n: lambda: pool.request(n, "GET", "/v1/noop"))


# -- vendor activation server ---------------------------------------------------------------------


class VendorInstances:
    """``count`` instances, each activated once online with ``license_key``; then check-ins."""

    def __init__(self, pool: Pool, license_key: str, count: int) -> None:
        self.pool = pool
        self.license_key = license_key
        self.keys = [Ed25519PrivateKey.generate() for _ in range(count)]
        self.activation_ids: list[str] = []

    async def activate_all(self) -> None:
        async def activate(n: int) -> str:
            request = sign_instance_request(
                self.keys[n],
                kind=labels.KIND_ACTIVATE,
                nonce=secrets.token_hex(16),
                created_at=int(time.time()),
                key_digest=key_digest(self.license_key),
            )
            response = await self.pool.request(
                n, "POST", "/v1/activations", {"license_key": self.license_key, "request": b64(request)}
            )
            return str(expect(response, "activation", 200, 201)["activation_id"])

        self.activation_ids = [await activate(n) for n in range(len(self.keys))]

    def _check_in(self, n: int) -> Callable[[], Awaitable[Response]]:
        request = sign_instance_request(
            self.keys[n],
            kind=labels.KIND_CHECK_IN,
            nonce=secrets.token_hex(16),
            created_at=int(time.time()),
            activation_id=self.activation_ids[n],
        )
        body = {"request": b64(request)}
        return lambda: self.pool.request(n, "POST", "/v1/activations/check-in", body)

    def _heartbeat(self, n: int) -> Callable[[], Awaitable[Response]]:
        request = sign_instance_request(
            self.keys[n],
            kind=labels.KIND_HEARTBEAT,
            nonce=secrets.token_hex(16),
            created_at=int(time.time()),
            activation_id=self.activation_ids[n],
        )
        body = {"request": b64(request)}
        return lambda: self.pool.request(n, "POST", "/v1/activations/heartbeat", body)

    async def heartbeats(self, concurrency: int, duration: float) -> LoadRound:
        """Worker n heartbeats as instance n (issue 22 item 2's light request), over and over."""
        assert concurrency <= len(self.keys)
        return await closed_loop(concurrency, duration, self._heartbeat)

    async def check_ins(self, concurrency: int, duration: float) -> LoadRound:
        """Worker n checks in as instance n, over and over (a real check-in each time)."""
        assert concurrency <= len(self.keys)
        return await closed_loop(concurrency, duration, self._check_in)


# -- floating license server ----------------------------------------------------------------------


async def _in_parallel(count: int, parallel: int, call: Callable[[int, int], Awaitable[None]]) -> float:
    """``call(worker, item)`` for items 0..count-1, at most ``parallel`` in flight; items per second."""
    queue = list(range(count - 1, -1, -1))

    async def worker(w: int) -> None:
        while queue:
            await call(w, queue.pop())

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(parallel)))
    return count / (time.perf_counter() - start)


def _lease_body(kind: str, key: Ed25519PrivateKey) -> dict[str, str]:
    return {"request": b64(lease_request(key, kind))}


_LEASE_PATHS = {
    labels.KIND_LEASE_ACQUIRE: "/v1/leases",
    labels.KIND_LEASE_RENEW: "/v1/leases/renew",
    labels.KIND_LEASE_RELEASE: "/v1/leases/release",
}


async def lease_cycle(
    pool: Pool, keys: list[Ed25519PrivateKey], parallel: int, cpu: Callable[[], float]
) -> dict[str, tuple[float, float]]:
    """Every instance acquires a seat, renews it, releases it.

    Returns, per phase, (operations per second, server CPU µs per operation); ``cpu``
    reads the server process's CPU seconds."""
    rates: dict[str, tuple[float, float]] = {}
    for kind in (labels.KIND_LEASE_ACQUIRE, labels.KIND_LEASE_RENEW, labels.KIND_LEASE_RELEASE):

        async def call(w: int, n: int, kind: str = kind) -> None:
            answer = expect(await pool.request(w, "POST", _LEASE_PATHS[kind], _lease_body(kind, keys[n])), kind)
            if kind == labels.KIND_LEASE_RELEASE and answer.get("released") is not True:
                raise RuntimeError("a held lease was not released")

        before = cpu()
        rate = await _in_parallel(len(keys), parallel, call)
        rates[kind.removeprefix("lease_")] = (rate, (cpu() - before) / len(keys) * 1e6)
    return rates


@dataclass
class SoakResult:
    instances: int
    ttl: int
    seconds: float
    acquires: int = 0
    renewals: int = 0
    leases_lost: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    worst_lateness: float = 0.0  # how far behind its schedule the latest request was sent (s)
    renew_p99_ms: float = 0.0
    seats_total: int = 0
    seats_used: int = 0
    seats_over_issued: int = 0
    extra_acquire: str = ""  # what one more instance got once the pool was full


async def soak(pool: Pool, *, instances: int, ttl: int, duration: float, parallel: int) -> SoakResult:
    """``instances`` agents lease a seat each, then renew every TTL/3 (the agent's schedule) until
    ``duration`` has passed.

    The fleet starts spread over one renewal period (instance n acquires at
    n/instances of TTL/3), so the server sees the steady renewal rate from the
    start. A lease is lost when a renewal is refused (the lease expired or its seat
    went to someone else). At the end the server's admin status must show every
    instance holding exactly one seat, no more seats used than the pool has, and
    one more instance must be refused (``no_seats``) since the pool is full.
    """
    keys = [Ed25519PrivateKey.generate() for _ in range(instances)]
    result = SoakResult(instances, ttl, duration)
    period = ttl / 3
    start = time.monotonic()
    end = start + duration
    held = [False] * instances
    due = [(start + n * period / instances, n) for n in range(instances)]  # (monotonic due time, instance)
    heapq.heapify(due)
    latencies: list[float] = []

    async def worker(w: int) -> None:
        while due:
            when, n = heapq.heappop(due)
            if when > end:
                return
            now = time.monotonic()
            if when > now:
                await asyncio.sleep(when - now)
            result.worst_lateness = max(result.worst_lateness, time.monotonic() - when)
            renewing = held[n]
            kind = labels.KIND_LEASE_RENEW if renewing else labels.KIND_LEASE_ACQUIRE
            body = _lease_body(kind, keys[n])
            t0 = time.perf_counter()
            response = await pool.request(w, "POST", _LEASE_PATHS[kind], body)
            if response.status != 200:
                result.failures[f"{kind}: {response.error_code()}"] += 1
                if renewing:
                    result.leases_lost += 1
                held[n] = False  # acquire again a second later, as the agent does
                heapq.heappush(due, (time.monotonic() + 1.0, n))
                continue
            if renewing:
                latencies.append(time.perf_counter() - t0)
                result.renewals += 1
            else:
                result.acquires += 1
            held[n] = True
            heapq.heappush(due, (time.monotonic() + period, n))

    await asyncio.gather(*(worker(w) for w in range(parallel)))
    result.seconds = time.monotonic() - start
    result.renew_p99_ms = percentile(latencies, 0.99) * 1000 if latencies else float("nan")

    status = expect(await pool.request(0, "GET", "/v1/admin/status"), "admin status")
    fingerprints = Counter(lease["instance_fingerprint"] for lease in status["leases"])
    result.seats_total, result.seats_used = int(status["seats"]["total"]), int(status["seats"]["used"])
    result.seats_over_issued = max(0, result.seats_used - result.seats_total) + sum(
        c - 1 for c in fingerprints.values()
    )
    if result.seats_used != sum(held):
        result.failures[f"server shows {result.seats_used} leases, instances hold {sum(held)}"] += 1
    extra = await pool.request(
        0, "POST", "/v1/leases", _lease_body(labels.KIND_LEASE_ACQUIRE, Ed25519PrivateKey.generate())
    )
    result.extra_acquire = f"HTTP {extra.status} {extra.error_code() if extra.status != 200 else 'lease granted'}"
    if extra.status == 200 and result.seats_used >= result.seats_total:
        result.seats_over_issued += 1

    async def release(w: int, n: int) -> None:
        await pool.request(
            w, "POST", _LEASE_PATHS[labels.KIND_LEASE_RELEASE], _lease_body(labels.KIND_LEASE_RELEASE, keys[n])
        )

    await _in_parallel(instances, parallel, release)
    return result
